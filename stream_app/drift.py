"""Input drift: per-feature PSI of a sliding window of recent events against the training data.

The reference comes from the champion's artifact: the batch job stores a
``reference_profile`` in :attr:`ScoringPipeline.metadata` (decile cut points and bin
proportions of each numeric training column, category proportions of each categorical
one). The worker bins every micro-batch's raw input columns with those same cut points
(one ``searchsorted`` per feature, no per-event Python), keeps the bin codes of the last
``window`` events in a ring buffer, and computes PSI from ``bincount`` s of the ring when
asked (every few seconds, off the hot path).

PSI and the reference profile (bins, expected shares, categories, epsilon) are defined
once in :mod:`scratch_models.drift`, shared with the batch data-quality gate. The usual
reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from schemas.events import SCHEMA_VERSION, new_event_id
from scratch_models.drift import FeatureReference, features_from_profile, psi

logger = logging.getLogger(__name__)

#: PSI above which a feature counts as drifted.
DEFAULT_PSI_THRESHOLD = 0.25
#: Default number of most recent events in the window.
DEFAULT_WINDOW = 5000


class DriftMonitor:
    """PSI of the last ``window`` events' raw features against a training reference profile.

    Parameters
    ----------
    reference_profile : mapping
        ``{"numeric": {name: {"edges": [...], "proportions": [...]}},
        "categorical": {name: {"categories": [...], "proportions": [...]}}}`` as written by
        the batch job into ``ScoringPipeline.metadata["reference_profile"]``.
    window : int, default 5000
        Most recent events kept; older ones fall out as new ones arrive.

    Attributes
    ----------
    features : list of str
        Features monitored, in profile order.
    size : int
        Events currently in the window (at most ``window``).
    """

    def __init__(self, reference_profile: Mapping[str, Any], window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"window: expected an integer >= 1, got {window}")
        self.window = int(window)
        self._bins = features_from_profile(reference_profile)
        if not self._bins:
            raise ValueError("reference profile has no features")
        self.features = [b.name for b in self._bins]
        # int16: at most a few dozen bins per feature; -1 = missing value.
        self._ring = np.full((self.window, len(self._bins)), -1, dtype=np.int16)
        self._pos = 0
        self.size = 0
        self.events_seen = 0
        # Per categorical feature: the categories array last seen in ``update`` and its bin table.
        self._tables: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    @classmethod
    def from_pipeline(cls, pipeline, window: int = DEFAULT_WINDOW) -> DriftMonitor | None:
        """A monitor for a scoring pipeline, or None when its artifact carries no reference profile."""
        profile = (getattr(pipeline, "metadata", None) or {}).get("reference_profile")
        if not profile:
            return None
        return cls(profile, window)

    def update(
        self,
        columns: Mapping[str, np.ndarray],
        codes: Mapping[str, np.ndarray] | None = None,
        categories: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Add a micro-batch's raw input columns (all of equal length) to the window.

        Features absent from ``columns`` count as missing for these events.

        Parameters
        ----------
        columns : mapping of str to ndarray of shape (n,)
            The scored events' raw input columns (:attr:`stream_app.scoring.BatchResult.columns`).
        codes : mapping of str to ndarray of shape (n,), intp, optional
            Category codes the featuriser already found for some text columns: the index of
            each value in ``categories[name]``, -1 for a value not among them
            (:attr:`stream_app.scoring.BatchResult.codes`). A categorical feature given here
            is binned by one integer look-up instead of searching its text again, when every
            reference category is among ``categories[name]`` (then a value outside them is
            outside the reference too); the bins are the same either way.
        categories : mapping of str to ndarray of shape (n_categories,), str, optional
            The categories ``codes`` index (the preprocessor's ``categories_``).
        """
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return
        self.events_seen += n
        take = min(n, self.window)
        out = np.full((take, len(self._bins)), -1, dtype=np.int16)
        for j, b in enumerate(self._bins):
            known = codes.get(b.name) if codes and categories else None
            table = None if known is None or categories is None else self._bins_of_codes(b, categories.get(b.name))
            if table is not None and known is not None:
                out[:, j] = table[known[n - take :]]  # code -1 reads the last entry: the unseen bin
                continue
            col = columns.get(b.name)
            if col is not None:
                out[:, j] = b.codes(col[n - take :])
        end = self._pos + take
        if end <= self.window:
            self._ring[self._pos : end] = out
        else:
            first = self.window - self._pos
            self._ring[self._pos :] = out[:first]
            self._ring[: take - first] = out[first:]
        self._pos = end % self.window
        self.size = min(self.size + take, self.window)

    def _bins_of_codes(self, feature: FeatureReference, categories: np.ndarray | None) -> np.ndarray | None:
        """Drift bin of each category code of ``categories`` (and, last, of code -1); None if not exact.

        Built once per categories array (a new champion's preprocessor brings a new one).
        """
        if categories is None or feature.numeric:
            return None
        cached = self._tables.get(feature.name)
        if cached is not None and cached[0] is categories:
            return cached[1]
        table = None
        if set(feature.categories.tolist()) <= set(np.asarray(categories, dtype=str).tolist()):
            table = np.append(feature.codes(np.asarray(categories)), len(feature.categories)).astype(np.int16)
        self._tables[feature.name] = (categories, table)
        return table

    def psi(self) -> dict[str, float]:
        """PSI per feature over the current window (features without values in it are left out)."""
        out: dict[str, float] = {}
        window = self._ring[: self.size] if self.size < self.window else self._ring
        for j, b in enumerate(self._bins):
            counts = b.counts(window[:, j])
            if counts.sum() == 0:
                continue
            out[b.name] = psi(b.expected, counts)
        return out


def drift_document(
    psi_by_feature: Mapping[str, float],
    *,
    window_size: int,
    window_capacity: int,
    model_name: str,
    model_version: str,
    threshold: float = DEFAULT_PSI_THRESHOLD,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``churn-drift`` record (a :class:`schemas.events.DriftRecord` document).

    ``alert`` is true when any feature's PSI exceeds ``threshold``.
    """
    now = now or datetime.now(UTC)
    values = {k: round(float(v), 6) for k, v in psi_by_feature.items()}
    drifted = sorted((k for k, v in values.items() if v > threshold), key=lambda k: -values[k])
    return {
        "event_id": new_event_id(),
        "event_time": now.isoformat(),
        "schema_version": SCHEMA_VERSION,
        "model_name": model_name,
        "model_version": model_version,
        "window_size": int(window_size),
        "window_capacity": int(window_capacity),
        "psi": values,
        "psi_threshold": float(threshold),
        "alert": bool(drifted),
        "drifted_features": drifted,
    }
