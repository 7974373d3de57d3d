"""The scoring hot path: decode a micro-batch, build one matrix, score it once, encode results.

Pure functions over bytes and arrays, no I/O: the Faust worker, the benchmark and
the tests all call the same code. Decoding against the data set's contract is
:mod:`stream_app.decode`; events become a model's input columns through the served
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

from schemas.events import (
    PREDICTED_VALUE_FIELD,
    REASONS_FIELD,
    SCHEMA_VERSION,
    UNKNOWN_CATEGORIES_FIELD,
    VALUE_AT_RISK_FIELD,
    CustomerEventBase,
)
from scratch_models.pipeline import ScoringPipeline
from scratch_models.preprocessing import TabularPreprocessor
from stream_app.contract import TELCO_CONTRACT, EventContract
from stream_app.decode import Failure, RawRecord, dead_letter, decode_batch

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
    "reason_codes",
    "reason_texts",
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


def _top_contributions(
    model: LoadedModel, X: np.ndarray, k: int, leaves: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Each row's ``k`` largest path contributions, largest first; None for a model without them.

    Returns
    -------
    top : ndarray of shape (n_samples, min(k, n_features_out)), intp
        Column of ``feature_names_out``.
    values : ndarray of the same shape, float64
    """
    contrib_fn = getattr(model.pipeline.model, "feature_contributions", None)
    if contrib_fn is None:
        return None
    contrib = contrib_fn(X) if leaves is None else contrib_fn(X, leaves=leaves)
    n, d = contrib.shape
    if k >= min(d, 8):
        top = np.argsort(-contrib, axis=1)[:, :k]
        return top, np.take_along_axis(contrib, top, axis=1)
    # A few reasons of many features: one argmax pass per reason beats sorting every row.
    work = contrib.copy()
    rows = np.arange(n)
    top = np.empty((n, k), dtype=np.intp)
    for i in range(k):
        top[:, i] = column = work.argmax(axis=1)
        work[rows, column] = -np.inf
    return top, np.take_along_axis(contrib, top, axis=1)


def reason_codes(model: LoadedModel, X: np.ndarray, k: int = 3) -> list[list[dict[str, Any]]]:
    """The features pushing each row's churn score up: the ``reasons`` of alerts and API predictions.

    Parameters
    ----------
    model : LoadedModel
        Its model's ``feature_contributions(X)`` (per-row, per-feature push on the score)
        gives the codes; a model without it gives none.
    X : ndarray of shape (n_samples, n_features_out), float64
        Rows as transformed by ``model.pipeline`` (its ``feature_names_out`` order).
    k : int, default 3
        Most reasons per row.

    Returns
    -------
    list of list of dict
        Per row, up to ``k`` ``{"feature": str, "contribution": float}`` with a positive
        contribution, largest first (the :class:`~schemas.events.Reason` contract).
    """
    found = _top_contributions(model, X, k) if len(X) else None
    if found is None:
        return [[] for _ in range(len(X))]
    top, values = found
    names = model.pipeline.feature_names_out
    return [
        [{"feature": names[j], "contribution": c} for j, c in zip(cols, vals) if c > 0]
        for cols, vals in zip(top.tolist(), values.tolist())
    ]


def _float_texts(values: np.ndarray) -> list[bytes]:
    """``orjson.dumps`` of each float, from one call (a JSON number never holds a comma)."""
    return orjson.dumps(values.tolist())[1:-1].split(b",") if values.size else []


def reason_texts(model: LoadedModel, X: np.ndarray, k: int = 3, leaves: np.ndarray | None = None) -> list[bytes]:
    """:func:`reason_codes` of each row as its JSON text: ``orjson.dumps`` of the list, byte for byte.

    The alerts' hot path: no dict per reason, one ``orjson.dumps`` for every contribution
    of the batch, and the ``{"feature":...,"contribution":`` prefix of each feature written once
    per model.

    Parameters
    ----------
    model : LoadedModel
    X : ndarray of shape (n_samples, n_features_out), float64
    k : int, default 3
    leaves : ndarray of shape (n_trees, n_samples), optional
        :func:`leaves_of` these rows, when known.

    Returns
    -------
    list of bytes
        One JSON array per row.
    """
    found = _top_contributions(model, X, k, leaves) if len(X) else None
    if found is None:
        return [b"[]"] * len(X)
    top, values = found
    m, width = top.shape
    positive = values > 0  # each row's positive ones come first: values are sorted
    prefixes = model.reason_prefixes
    # Every row's parts side by side: per reason slot "[" or ",", prefix, contribution, "}"
    # (all empty past the row's positive ones), then "]" and a newline to split at.
    parts = np.full((m, 4 * width + 1), b"", dtype=object)
    openers = np.array([b"["] + [b","] * (width - 1), dtype=object)
    parts[:, 0:-1:4] = np.where(positive, openers, b"")
    parts[:, 1:-1:4] = prefixes[np.where(positive, top, len(prefixes) - 1)]
    contributions = parts[:, 2:-1:4]
    contributions[positive] = _float_texts(values[positive])
    parts[:, 3:-1:4] = np.where(positive, b"}", b"")
    parts[:, -1] = np.where(positive[:, 0], b"]\n", b"[]\n")
    texts = b"".join(parts.ravel().tolist()).split(b"\n")
    texts.pop()  # after the last newline
    return texts


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


# An alert is its score's JSON with these members spliced in before the closing brace.
_ALERT_KEYS = [f',"{name}":'.encode() for name in (REASONS_FIELD, PREDICTED_VALUE_FIELD, VALUE_AT_RISK_FIELD)]


def _alert_documents(
    scores: Sequence[tuple[bytes | None, bytes]], rows: Sequence[int], members: Sequence[Sequence[bytes]]
) -> list[tuple[bytes | None, bytes]]:
    """Alerts as (key, value): each row's score document with ``members`` spliced in before its brace.

    ``members`` are the JSON texts, one per alert, of ``reasons`` and, when given,
    ``predicted_value_usd`` and ``value_at_risk_usd``, in that order: the same bytes as dumping
    the score document with them appended. One ``b"".join`` writes every alert, split at the
    newline after each (the texts hold no raw newline).
    """
    m, width = len(rows), 2 * len(members) + 2
    parts: list[bytes] = [b""] * (width * m)
    parts[0::width] = [scores[i][1][:-1] for i in rows]
    for j, texts in enumerate(members):
        parts[2 * j + 1 :: width] = [_ALERT_KEYS[j]] * m
        parts[2 * j + 2 :: width] = texts
    parts[width - 1 :: width] = [b"}\n"] * m
    values = b"".join(parts).split(b"\n")
    values.pop()  # after the last newline
    return list(zip([scores[i][0] for i in rows], values))


#: Bytes whose character JSON text must escape (orjson writes every other character as it is, in
#: UTF-8, whose multi-byte sequences hold none of them), but NUL: it separates the texts of a column.
_ESCAPED_BUT_NUL = bytes(range(1, 32)) + b'"\\'


#: The churn label member, indexed by the label.
_LABEL_TEXTS = (b',"churn_label":false', b',"churn_label":true')


def _utf8_unescaped(texts: Sequence[str]) -> list[bytes] | None:
    """UTF-8 of each text, from one encode; None when any needs a JSON escape (NUL included)."""
    data = "\x00".join(texts).encode()
    if len(data.translate(None, _ESCAPED_BUT_NUL)) != len(data) or data.count(b"\x00") != len(texts) - 1:
        return None
    return data.split(b"\x00")


def _score_texts(
    event_ids: Sequence[str],
    times: Sequence[str],
    ids: Sequence[str],
    proba: np.ndarray,
    labels: Sequence[bool],
    unknown: Sequence[list[str]],
    head: dict[str, Any],
) -> tuple[list[bytes], list[bytes]] | None:
    """Each score document's JSON, the bytes ``orjson.dumps`` gives for its dict, and its key; or None.

    The members common to the batch are written once; ids and times are spliced in as
    UTF-8 when none needs a JSON escape (None otherwise: the caller dumps each dict),
    probabilities come from one ``orjson.dumps``. Every document of the batch is one
    ``b"".join`` of its parts, split at a newline after each (JSON text from orjson holds no
    raw newline, and the spliced texts hold no control character).

    Returns
    -------
    texts : list of bytes
    keys : list of bytes
        The UTF-8 of each customer id.
    """
    n = len(ids)
    columns = [_utf8_unescaped(column) for column in (event_ids, times, ids)]
    if n == 0 or any(column is None for column in columns):
        return None
    e, t, cid = cast("list[list[bytes]]", columns)
    common = orjson.dumps(head)[1:-1]
    clean = b"," + common + b',"' + UNKNOWN_CATEGORIES_FIELD.encode() + b'":[]}\n'
    unseen = b"," + common + b',"' + UNKNOWN_CATEGORIES_FIELD.encode() + b'":'
    ends = [clean] * n
    if any(unknown):
        for i, u in enumerate(unknown):
            if u:
                ends[i] = unseen + orjson.dumps(u) + b"}\n"
    parts: list[bytes] = [b""] * (10 * n)
    parts[0::10] = [b'{"event_id":"'] * n
    parts[1::10] = e
    parts[2::10] = [b'","event_time":"'] * n
    parts[3::10] = t
    parts[4::10] = [b'","schema_version":' + orjson.dumps(SCHEMA_VERSION) + b',"customer_id":"'] * n
    parts[5::10] = cid
    parts[6::10] = [b'","churn_probability":'] * n
    parts[7::10] = _float_texts(proba)
    parts[8::10] = list(map(_LABEL_TEXTS.__getitem__, labels))
    parts[9::10] = ends
    texts = b"".join(parts).split(b"\n")
    texts.pop()  # after the last newline
    return texts, cid


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
        spliced = _score_texts(event_ids, times, ids, proba, labels, unknown, head)
        if spliced is not None:
            texts, keys = spliced
        else:  # text JSON must escape: orjson writes each document
            texts = [
                orjson.dumps(
                    {
                        "event_id": e,
                        "event_time": t,
                        "schema_version": SCHEMA_VERSION,
                        "customer_id": cid,
                        "churn_probability": p,
                        "churn_label": label,
                        **head,
                        UNKNOWN_CATEGORIES_FIELD: u,
                    }
                )
                for e, t, cid, p, label, u in zip(event_ids, times, ids, proba.tolist(), labels, unknown)
            ]
            keys = [cid.encode() for cid in ids]
        scores = result.scores = list(zip(keys, texts))
        result.alert_rows = alert_rows
        result.event_times = times
        result.columns = columns
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
                result.alerts = _alert_documents(scores, alert_list, [reasons])
            else:
                value_usd = _customer_value(value_model, columns, alert_rows, (pipeline.preprocessor, X_alerts))
                at_risk = proba[alert_rows] * value_usd
                if timings is not None:
                    tick = _lap(timings, "reasons", tick)
                result.alerts = _alert_documents(
                    scores, alert_list, [reasons, _float_texts(value_usd), _float_texts(at_risk)]
                )
    elif timings is not None:
        tick = _lap(timings, "featurise", tick)
    result.failures = failures
    result.dead_letters = [dead_letter(f, now) for f in failures]
    if timings is not None:
        _lap(timings, "encode", tick)
    return result
