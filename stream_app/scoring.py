"""The scoring hot path: decode a micro-batch, build one matrix, score it once, encode results.

Pure functions over bytes and arrays, no I/O: the Faust worker, the benchmark and
the tests all call the same code. Decoding against the data set's contract is
:mod:`stream_app.decode`, reason codes :mod:`stream_app.reasons`, the JSON of scores and
alerts :mod:`stream_app.encode`; events become a model's input columns through the served
:class:`~stream_app.contract.EventContract` (the normaliser, blank rules and derived
features of its profile). Every score lists the categorical fields whose value the model
never saw in training (``unknown_categories``). Measured in process, stage by stage, with
``churn bench score`` (the ``timings`` of :func:`score_batch`), and end to end with
``churn bench stream``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from time import perf_counter
from typing import Any, Protocol, cast

import numpy as np
import orjson

from schemas.events import CustomerEventBase
from scratch_models.pipeline import ScoringPipeline
from scratch_models.preprocessing import TabularPreprocessor
from stream_app.contract import TELCO_CONTRACT, EventContract
from stream_app.decode import Failure, RawRecord, dead_letter, decode_batch
from stream_app.encode import alert_documents, float_texts, score_documents
from stream_app.reasons import reason_texts

__all__ = [
    "STAGES",
    "BatchResult",
    "Failure",
    "LoadedModel",
    "RawRecord",
    "churn_probabilities",
    "dead_letter",
    "decode_batch",
    "event_columns",
    "leaves_of",
    "score_batch",
    "unknown_categories",
]


@dataclass
class LoadedModel:
    """A verified, warmed-up pipeline and the names that identify it on every score.

    ``contract`` is the data set contract the model serves: events are decoded and
    featurised by it (Telco's by default).
    """

    pipeline: ScoringPipeline
    model_name: str
    model_version: str
    contract: EventContract = field(default=TELCO_CONTRACT, repr=False)

    @property
    def threshold(self) -> float:
        """Alert threshold carried by the artifact."""
        return self.pipeline.threshold

    @cached_property
    def categories(self) -> dict[str, np.ndarray]:
        """The preprocessor's training categories per categorical column (``categories_``)."""
        pre = self.pipeline.preprocessor
        return dict(zip(pre.categorical_features, pre.categories_))

    @cached_property
    def reason_prefixes(self) -> np.ndarray:
        """Per model feature, the JSON of a reason up to its contribution: ``{"feature":"...","contribution":``.

        ndarray of shape (n_features_out + 1,), object (bytes); the last is empty.
        """
        names = self.pipeline.feature_names_out
        prefixes = [b'{"feature":' + orjson.dumps(name) + b',"contribution":' for name in names]
        return np.array([*prefixes, b""], dtype=object)


@dataclass
class BatchResult:
    """Outputs of one micro-batch.

    Attributes
    ----------
    scores : list of (key, value) bytes
        One per valid input event, for ``churn-scores``.
    alerts : list of (key, value) bytes
        Events at or above the threshold, for ``churn-alerts``.
    dead_letters : list of (key, value) bytes
        For ``customers.dlq``.
    probabilities : ndarray of shape (n_valid,), float64
    event_times : list of str
        UTC ISO 8601 ``event_time`` of each scored event, in the order of ``probabilities``.
    columns : dict of str to ndarray of shape (n_valid,)
        The scored events' raw input columns (what the featuriser was given), for drift
        monitoring and shadow scoring without decoding the batch again.
    codes : dict of str to ndarray of shape (n_valid,), intp
        For the text columns the featuriser read through their distinct values, each value's
        index in :attr:`LoadedModel.categories` (-1 if not among them), for drift monitoring
        without searching the text again; empty when a row was featurised alone.
    alert_rows : ndarray of shape (n_alerts,), int64
        Rows of ``probabilities`` that became alerts.
    alert_event_ids : list of str
        ``event_id`` of each alert, in the order of ``alerts``.
    unknown_counts : dict of str to int
        Scored events per categorical field whose value the model never saw in training.
    """

    scores: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    alerts: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    probabilities: np.ndarray = field(default_factory=lambda: np.empty(0))
    failures: list[Failure] = field(default_factory=list)
    event_times: list[str] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    alert_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    alert_event_ids: list[str] = field(default_factory=list)
    unknown_counts: dict[str, int] = field(default_factory=dict)


def event_columns(
    events: Sequence[CustomerEventBase], names: Sequence[str], contract: EventContract = TELCO_CONTRACT
) -> dict[str, np.ndarray]:
    """Input columns of validated events: :meth:`EventContract.event_columns` (Telco's by default)."""
    return contract.event_columns(events, names)


class _Classifier(Protocol):
    def predict_proba(self, X: np.ndarray, **kwargs: Any) -> np.ndarray: ...


def leaves_of(model: LoadedModel, X: np.ndarray) -> np.ndarray | None:
    """The leaf of each row in each tree, when the model can share them (gradient boosting).

    Found once, they serve :func:`churn_probabilities` of every row and the path
    contributions (:func:`reason_texts`) of the alert rows among them.

    Returns
    -------
    ndarray of shape (n_trees, n_samples), uint8, or None
    """
    leaves_fn = getattr(model.pipeline.model, "leaves", None)
    return leaves_fn(X) if leaves_fn is not None else None


def churn_probabilities(model: LoadedModel, X: np.ndarray, leaves: np.ndarray | None = None) -> np.ndarray:
    """Churn (positive-class) probability of rows already transformed by ``model``'s pipeline.

    Parameters
    ----------
    model : LoadedModel
        A classifier's pipeline.
    X : ndarray of shape (n_samples, n_features_out), float64
    leaves : ndarray of shape (n_trees, n_samples), optional
        :func:`leaves_of` ``X``, when known.

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    # ScoringPipeline types its model as the common base, which declares no predict_proba.
    classifier = cast(_Classifier, model.pipeline.model)
    if leaves is not None:
        return classifier.predict_proba(X, leaves=leaves)[:, 1]
    return classifier.predict_proba(X)[:, 1]


def unknown_categories(
    model: LoadedModel, X: np.ndarray, codes: Mapping[str, np.ndarray] | None = None
) -> tuple[list[list[str]], dict[str, int]]:
    """The categorical fields of each row whose value the model never saw in training.

    An unseen category encodes as all-zero indicators (:class:`~scratch_models.preprocessing.TabularPreprocessor`),
    so it is read off the design matrix: no second pass over the text. When ``codes`` covers
    every categorical field, it is read off the codes (-1) instead.

    Parameters
    ----------
    model : LoadedModel
    X : ndarray of shape (n_samples, n_features_out), float64
        Rows as transformed by ``model.pipeline``.
    codes : mapping of str to ndarray of shape (n_samples,), int, optional
        The category codes ``X`` was transformed with
        (:meth:`~stream_app.contract.EventContract.columns_and_codes`).

    Returns
    -------
    per_row : list of list of str
        Field names per row, in the model's order (the same empty list object for every clean row).
    counts : dict of str to int
        Rows per field with an unseen value (fields without any are left out).
    """
    pre = model.pipeline.preprocessor
    n = len(X)
    empty: list[str] = []
    if not pre.categorical_features or n == 0:
        return [empty] * n, {}
    names = pre.categorical_features
    if codes is not None and all(name in codes for name in names):
        unknown = (np.stack([codes[name] for name in names]) < 0).T
    else:
        k = len(pre.numeric_features)
        starts = np.cumsum([0] + [len(cats) for cats in pre.categories_[:-1]])
        # Indicators are 0.0 or 1.0: a field's block sums to 0 exactly when its value is unseen.
        unknown = np.add.reduceat(X[:, k:], starts, axis=1) == 0
    counts = unknown.sum(axis=0)
    per_row = [empty] * n
    for i in np.flatnonzero(unknown.any(axis=1)).tolist():
        per_row[i] = [names[j] for j in np.flatnonzero(unknown[i]).tolist()]
    return per_row, {names[j]: int(c) for j, c in enumerate(counts.tolist()) if c}


class _RowsOf(Mapping[str, np.ndarray]):
    """Columns restricted to some rows, each subset only when read."""

    def __init__(self, columns: Mapping[str, np.ndarray], rows: np.ndarray) -> None:
        self._columns, self._rows = columns, rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name][self._rows]

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def _customer_value(
    value_model: LoadedModel,
    columns: Mapping[str, np.ndarray],
    rows: np.ndarray,
    shared: tuple[TabularPreprocessor, np.ndarray] | None = None,
) -> np.ndarray:
    """Predicted customer value (USD, clipped at 0) of the given rows: one matrix operation.

    ``shared`` is the classifier's preprocessor and design matrix of the same rows: the
    one-hot blocks both encode alike are copied, not encoded again.
    """
    pipeline = value_model.pipeline
    X = pipeline.preprocessor.transform(_RowsOf(columns, rows), shared)
    # A linear regressor can extrapolate below zero for new customers; value cannot be negative.
    return np.maximum(pipeline.model.predict(X), 0.0)


#: Stages of :func:`score_batch`'s ``timings``, in the order the batch goes through them.
STAGES = ("decode", "validate", "featurise", "predict", "reasons", "encode")


def _lap(timings: dict[str, float], stage: str, since: float) -> float:
    """Add the seconds since ``since`` to ``timings[stage]``; return now."""
    now = perf_counter()
    timings[stage] = timings.get(stage, 0.0) + now - since
    return now


def score_batch(
    model: LoadedModel,
    records: Sequence[RawRecord],
    now: datetime | None = None,
    value_model: LoadedModel | None = None,
    timings: dict[str, float] | None = None,
) -> BatchResult:
    """Score one micro-batch with one matrix operation.

    Invalid records become dead letters; if featurisation fails for the batch, rows
    are retried one by one so only the offending ones are dead-lettered.

    Parameters
    ----------
    model : LoadedModel
    records : sequence of RawRecord
    now : datetime, optional
        ``scored_at`` of the batch (default: the current UTC time).
    value_model : LoadedModel, optional
        A ``sales-regressor`` pipeline; when given, alerts also carry
        ``predicted_value_usd`` and ``value_at_risk_usd`` (churn probability x predicted
        value), computed on the alert rows only with one matrix operation.
    timings : dict of str to float, optional
        When given, the seconds (wall clock) spent in each stage are added to it, keyed by
        :data:`STAGES`: ``decode`` (bytes to dicts, ``orjson.loads``), ``validate`` (the
        contract's checks; pydantic for records off the fast path), ``featurise`` (input
        columns and design matrix), ``predict`` (probabilities and labels), ``reasons``
        (path contributions, top reasons and the value model, alert rows only) and
        ``encode`` (score, alert and dead-letter JSON). A few clock reads per batch.

    Returns
    -------
    BatchResult
        Scores in input order; each alert is its score document plus ``reasons``
        (and the value fields with ``value_model``).
    """
    now = now or datetime.now(UTC)
    contract = model.contract
    decoded = contract.decoder.decode(records, timings)
    tick = perf_counter() if timings is not None else 0.0
    ok_records, rows, times, failures = decoded.records, decoded.rows, decoded.event_times, decoded.failures
    result = BatchResult()
    pipeline = model.pipeline
    names = pipeline.feature_names_in
    X = None
    columns: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    if rows:
        try:
            columns, codes = contract.columns_and_codes(rows, names, decoded.fields, decoded.distinct, model.categories)
            X = pipeline.transform(columns, codes)
        except (ValueError, TypeError):
            keep_r, keep_rows, keep_t, mats = [], [], [], []
            for rec, row, t in zip(ok_records, rows, times):
                try:
                    mats.append(pipeline.transform(contract.columns([row], names)))
                    keep_r.append(rec)
                    keep_rows.append(row)
                    keep_t.append(t)
                except (ValueError, TypeError) as exc:
                    failures.append(Failure(rec, "featurise", type(exc).__name__, str(exc)))
            ok_records, rows, times = keep_r, keep_rows, keep_t
            X = np.vstack(mats) if mats else None
            columns, codes = (contract.columns(rows, names) if rows else {}), {}
    if X is not None and rows:
        unknown, result.unknown_counts = unknown_categories(model, X, codes)
        if timings is not None:
            tick = _lap(timings, "featurise", tick)
        leaves = leaves_of(model, X)
        proba = churn_probabilities(model, X, leaves)
        threshold = pipeline.threshold
        alerting = proba >= threshold
        labels = alerting.tolist()
        alert_rows = np.flatnonzero(alerting)
        if timings is not None:
            tick = _lap(timings, "predict", tick)
        result.probabilities = proba
        id_field = contract.id_field
        fields = decoded.fields
        event_ids = fields["event_id"] if fields is not None else [row["event_id"] for row in rows]
        ids = contract.normalised_ids(fields[id_field] if fields is not None else [row[id_field] for row in rows])
        head = {
            "threshold": threshold,
            "model_name": model.model_name,
            "model_version": model.model_version,
            "scored_at": now.isoformat(),
        }
        texts, keys = score_documents(event_ids, times, ids, proba, labels, unknown, head)
        scores = result.scores = list(zip(keys, texts))
        result.alert_rows = alert_rows
        result.event_times = times
        result.columns = columns
        result.codes = codes
        if timings is not None:
            tick = _lap(timings, "encode", tick)
        if len(alert_rows):
            alert_list = alert_rows.tolist()
            result.alert_event_ids = [rows[i]["event_id"] for i in alert_list]
            X_alerts = X[alert_rows]
            reasons = reason_texts(model, X_alerts, leaves=None if leaves is None else leaves[:, alert_rows])
            if value_model is None:
                if timings is not None:
                    tick = _lap(timings, "reasons", tick)
                # Same bytes as dumping the score document with "reasons" appended.
                result.alerts = alert_documents(scores, alert_list, [reasons])
            else:
                value_usd = _customer_value(value_model, columns, alert_rows, (pipeline.preprocessor, X_alerts))
                at_risk = proba[alert_rows] * value_usd
                if timings is not None:
                    tick = _lap(timings, "reasons", tick)
                result.alerts = alert_documents(
                    scores, alert_list, [reasons, float_texts(value_usd), float_texts(at_risk)]
                )
    elif timings is not None:
        tick = _lap(timings, "featurise", tick)
    result.failures = failures
    result.dead_letters = [dead_letter(f, now) for f in failures]
    if timings is not None:
        _lap(timings, "encode", tick)
    return result
