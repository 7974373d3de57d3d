"""Population stability index (PSI) and the reference profile it compares against.

One definition for the batch data-quality gate (a cycle's data against the last
accepted training set, :mod:`batch.quality`) and the worker's live drift monitor (a
window of recent events against the champion's training distribution,
:mod:`stream_app.drift`).

PSI (Siddiqi, *Credit Risk Scorecards*, Wiley 2006, ch. 8; Yurdakul, "Statistical
properties of population stability index", Western Michigan University, 2018)::

    PSI = sum_i (a_i - e_i) * ln(a_i / e_i)

over bins ``i``, ``e`` the reference (expected) shares and ``a`` the current (actual)
ones, both floored at :data:`PSI_EPSILON` so an empty bin gives a large but finite
value. The usual reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.

The reference profile of a feature fixes its bins from the reference sample:

- numeric: the distinct inner quantile cut points of its finite values (deciles by
  default; heavy ties such as tenure 1 or 72 months merge bins), a value ``x`` falls in
  bin ``searchsorted(edges, x, "right")``, so values beyond the reference range land in
  the outer bins; non-finite values are not counted;
- categorical: one bin per reference category (values compared as ``str``) plus one
  last bin for every category the reference never had (expected share 0).

Its JSON form, stored in a champion's ``ScoringPipeline.metadata["reference_profile"]``, is
``{"n_rows", "numeric": {name: {"edges", "proportions"}}, "categorical": {name:
{"categories", "proportions"}}}`` (see :func:`profile_from_features`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Floor of bin shares in the PSI sum (an empty bin would make it infinite).
PSI_EPSILON = 1e-4
#: Quantile bins of a numeric feature (at most; ties merge bins).
DEFAULT_BINS = 10


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = PSI_EPSILON) -> float:
    """Population stability index of two binned distributions (Yurdakul 2018).

    Parameters
    ----------
    expected, actual : ndarray of shape (n_bins,), float64
        Bin shares or counts of the reference and of the current sample; each is
        normalised to sum to 1.
    eps : float, default 1e-4
        Floor of each share.

    Returns
    -------
    float
        ``sum((a - e) * ln(a / e))``; 0 for identical distributions, never negative.

    Raises
    ------
    ValueError
        If the two have different numbers of bins.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError(f"expected and actual bins differ: {e.shape} vs {a.shape}")
    e = np.maximum(e / max(e.sum(), 1e-300), eps)
    a = np.maximum(a / max(a.sum(), 1e-300), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(values: np.ndarray, n_bins: int = DEFAULT_BINS) -> np.ndarray:
    """Distinct inner cut points at the quantiles ``1/n_bins .. (n_bins-1)/n_bins`` of the finite values.

    Parameters
    ----------
    values : ndarray of shape (n_samples,), float64
    n_bins : int, default 10

    Returns
    -------
    ndarray of shape (<= n_bins - 1,), float64, increasing
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.shape[0] == 0:
        return np.empty(0)
    # linspace(0.1, 0.9, 9) for deciles: the points the stored profiles were cut at, bit for bit.
    return np.unique(np.quantile(x, np.linspace(1.0 / n_bins, 1.0 - 1.0 / n_bins, n_bins - 1)))


@dataclass(frozen=True)
class FeatureReference:
    """The bins of one feature and the reference's share in each.

    Attributes
    ----------
    name : str
    numeric : bool
    edges : ndarray of shape (n_bins - 1,), float64
        Numeric: increasing cut points; empty for a categorical feature.
    categories : ndarray of shape (n_bins - 1,), str
        Categorical: the reference categories, sorted; the last bin holds any other. Empty
        for a numeric feature.
    expected : ndarray of shape (n_bins,), float64
        Reference share of each bin.
    """

    name: str
    numeric: bool
    edges: np.ndarray
    categories: np.ndarray
    expected: np.ndarray

    @property
    def n_bins(self) -> int:
        """Number of bins (numeric: ``len(edges) + 1``; categorical: ``len(categories) + 1``)."""
        return len(self.expected)

    @classmethod
    def numeric_from_values(cls, name: str, values: np.ndarray, n_bins: int = DEFAULT_BINS) -> FeatureReference:
        """Quantile bins of a numeric reference sample (its finite values) and their shares."""
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        edges = quantile_edges(x, n_bins)
        counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        return cls(name, True, edges, np.empty(0, dtype=str), counts / max(len(x), 1))

    @classmethod
    def categorical_from_values(cls, name: str, values: np.ndarray) -> FeatureReference:
        """One bin per category of a reference sample (as ``str``), plus the unseen bin."""
        cats, counts = np.unique(_as_str(values), return_counts=True)
        if cats.shape[0] == 0:
            return cls(name, False, np.empty(0), cats, np.zeros(1))
        return cls.categorical(name, cats, counts / counts.sum())

    @classmethod
    def categorical(cls, name: str, categories: Iterable[Any], proportions: Iterable[float]) -> FeatureReference:
        """A categorical reference from its categories and their shares (any order)."""
        cats = np.asarray(list(categories), dtype=str)
        props = np.asarray(list(proportions), dtype=np.float64)
        if len(cats) != len(props) or len(cats) == 0:
            raise ValueError(f"reference profile {name}: {len(cats)} categories, {len(props)} proportions")
        order = np.argsort(cats)
        return cls(name, False, np.empty(0), cats[order], np.append(props[order], 0.0))

    def codes(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value, ndarray of shape (n,), int64; -1 for a non-finite numeric value (not counted)."""
        if self.numeric:
            x = np.asarray(values, dtype=np.float64)
            return np.where(np.isfinite(x), np.searchsorted(self.edges, x, side="right"), -1)
        x = _as_str(values)
        if len(self.categories) == 0:
            return np.zeros(x.shape[0], dtype=np.int64)
        idx = np.searchsorted(self.categories, x)
        found = np.minimum(idx, len(self.categories) - 1)
        return np.where(self.categories[found] == x, found, len(self.categories))

    def counts(self, codes: np.ndarray) -> np.ndarray:
        """Values per bin from :meth:`codes` (negative codes skipped), ndarray of shape (n_bins,), int64."""
        codes = np.asarray(codes)
        return np.bincount(codes[codes >= 0], minlength=self.n_bins)[: self.n_bins]

    def psi(self, values: np.ndarray, eps: float = PSI_EPSILON) -> float:
        """PSI of a current sample of this feature against the reference.

        NaN when the current sample or the reference has no counted value (nothing to compare).
        """
        counts = self.counts(self.codes(values))
        if counts.sum() == 0 or self.expected.sum() == 0:
            return float("nan")
        return psi(self.expected, counts, eps)


def _as_str(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values)
    return x if x.dtype.kind == "U" else x.astype(str)


def features_from_profile(profile: Mapping[str, Any]) -> list[FeatureReference]:
    """The features of a JSON reference profile, numeric ones first, each in profile order.

    Raises
    ------
    ValueError
        If a feature's edges and proportions (or categories and proportions) do not match.
    """
    out = []
    for name, spec in (profile.get("numeric") or {}).items():
        edges = np.asarray(spec["edges"], dtype=np.float64)
        expected = np.asarray(spec["proportions"], dtype=np.float64)
        if len(expected) != len(edges) + 1:
            raise ValueError(
                f"reference profile {name}: {len(edges)} edges need {len(edges) + 1} proportions, got {len(expected)}"
            )
        out.append(FeatureReference(name, True, edges, np.empty(0, dtype=str), expected))
    for name, spec in (profile.get("categorical") or {}).items():
        out.append(FeatureReference.categorical(name, spec["categories"], spec["proportions"]))
    return out


def profile_from_features(features: Iterable[FeatureReference], n_rows: int) -> dict[str, Any]:
    """The JSON reference profile of ``features`` (the inverse of :func:`features_from_profile`).

    Parameters
    ----------
    features : iterable of FeatureReference
    n_rows : int
        Rows of the reference sample.

    Returns
    -------
    dict
        ``{"n_rows", "numeric": {name: {"edges", "proportions"}},
        "categorical": {name: {"categories", "proportions"}}}``; the unseen-category bin is
        implied, not stored.
    """
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    for f in features:
        if f.numeric:
            numeric[f.name] = {"edges": f.edges.tolist(), "proportions": f.expected.tolist()}
        else:
            categorical[f.name] = {"categories": f.categories.tolist(), "proportions": f.expected[:-1].tolist()}
    return {"n_rows": int(n_rows), "numeric": numeric, "categorical": categorical}
