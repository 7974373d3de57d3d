"""The scoring hot path: decode a micro-batch, build one matrix, score it once, encode results.

Pure functions over bytes and arrays, no I/O: the Faust worker, the benchmark and
the tests all call the same code.

Decoding takes a fast path for records in the canonical form our producers write
(orjson parse, then column-wise type and range checks derived from the
``CustomerEvent`` contract); any record the fast path is not sure about goes
through pydantic exactly as before, so every accepted value and every error
message is the contract's own. Measured with ``churn bench stream``.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Protocol, cast

import numpy as np
import orjson
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import BeforeValidator, ValidationError
from pydantic.types import Strict

from schemas.events import (
    PREDICTED_VALUE_FIELD,
    REASONS_FIELD,
    SCHEMA_VERSION,
    VALUE_AT_RISK_FIELD,
    CustomerEvent,
    format_validation_error,
    json_datetime,
    json_integer,
)
from scratch_models.pipeline import ScoringPipeline


@dataclass(frozen=True)
class RawRecord:
    """One consumed Kafka record: original bytes and coordinates."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Failure:
    """A record that could not be processed, destined for the dead-letter topic."""

    record: RawRecord
    stage: str
    error_class: str
    error_message: str


@dataclass
class LoadedModel:
    """A verified, warmed-up pipeline and the names that identify it on every score."""

    pipeline: ScoringPipeline
    model_name: str
    model_version: str

    @property
    def threshold(self) -> float:
        """Alert threshold carried by the artifact."""
        return self.pipeline.threshold


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


def _stage_of(exc: ValidationError) -> str:
    types = {e.get("type") for e in exc.errors()}
    return "decode" if types & {"json_invalid", "json_type", "model_type"} else "validate"


def decode_batch(records: Sequence[RawRecord]) -> tuple[list[RawRecord], list[CustomerEvent], list[Failure]]:
    """Split a micro-batch into valid events and failures (decode or validate stage)."""
    ok_records: list[RawRecord] = []
    events: list[CustomerEvent] = []
    failures: list[Failure] = []
    for rec in records:
        if not rec.value:
            failures.append(Failure(rec, "decode", "EmptyValue", "record value is null or empty"))
            continue
        try:
            events.append(CustomerEvent.model_validate_json(rec.value))
            ok_records.append(rec)
        except ValidationError as exc:
            err = format_validation_error(exc, limit=len(exc.errors()))  # every missing field, not 10
            failures.append(Failure(rec, _stage_of(exc), "EventValidationError", str(err)))
    return ok_records, events, failures


def event_columns(events: Sequence[CustomerEvent], names: Sequence[str]) -> dict[str, np.ndarray]:
    """Column arrays of the named fields: numbers and booleans as float64 (None -> NaN), text as str."""
    cols: dict[str, np.ndarray] = {}
    for name in names:
        values = [getattr(e, name) for e in events]
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, str):
            cols[name] = np.asarray(values, dtype=str)
        else:
            cols[name] = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return cols


def dead_letter(failure: Failure, now: datetime | None = None) -> tuple[bytes | None, bytes]:
    """The ``customers.dlq`` record of a failure: original bytes (base64), coordinates, stage, error."""
    rec = failure.record
    now = now or datetime.now(UTC)
    doc = {
        "event_id": f"dlq-{rec.topic}-{rec.partition}-{rec.offset}",
        "event_time": now.isoformat(),
        "schema_version": SCHEMA_VERSION,
        "original_value_b64": base64.b64encode(rec.value).decode() if rec.value is not None else None,
        "original_key_b64": base64.b64encode(rec.key).decode() if rec.key is not None else None,
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "stage": failure.stage,
        "error_class": failure.error_class,
        "error_message": failure.error_message[:2000],
        "failed_at": now.isoformat(),
    }
    return rec.key, orjson.dumps(doc)


class _Classifier(Protocol):
    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


def churn_probabilities(model: LoadedModel, X: np.ndarray) -> np.ndarray:
    """Churn (positive-class) probability of rows already transformed by ``model``'s pipeline.

    Parameters
    ----------
    model : LoadedModel
        A classifier's pipeline.
    X : ndarray of shape (n_samples, n_features_out), float64

    Returns
    -------
    ndarray of shape (n_samples,), float64
    """
    # ScoringPipeline types its model as the common base, which declares no predict_proba.
    return cast(_Classifier, model.pipeline.model).predict_proba(X)[:, 1]


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
    contrib_fn = getattr(model.pipeline.model, "feature_contributions", None)
    if contrib_fn is None or len(X) == 0:
        return [[] for _ in range(len(X))]
    contrib = contrib_fn(X)
    names = model.pipeline.feature_names_out
    top = np.argsort(-contrib, axis=1)[:, :k]
    top_vals = np.take_along_axis(contrib, top, axis=1).tolist()
    return [
        [{"feature": names[j], "contribution": c} for j, c in zip(cols, vals) if c > 0]
        for cols, vals in zip(top.tolist(), top_vals)
    ]


# ---------------------------------------------------------------- fast decode
_MISSING = object()
_NONE_T = type(None)
_MISSING_T = type(_MISSING)
# Canonical UTC timestamps only; anything else (other offsets, a space separator,
# numbers) is left to pydantic, which knows every form the contract accepts.
_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|\+00:00)")


@dataclass(frozen=True)
class _FieldCheck:
    name: str
    kind: str  # "bool" | "int" | "float" | "str" | "time"
    types: frozenset
    lo: float | None
    hi: float | None
    default: Any


def _field_checks() -> list[_FieldCheck] | None:
    """Checks equivalent to ``CustomerEvent`` for canonical JSON values, or None if the
    contract uses something this fast path does not understand (then pydantic does all)."""
    decorators = CustomerEvent.__pydantic_decorators__
    if (
        set(decorators.field_validators) != {"_to_utc"}
        or decorators.model_validators
        or CustomerEvent.model_config.get("extra") != "ignore"
    ):
        return None
    checks = []
    base: dict[Any, tuple[str, set[type]]] = {
        bool: ("bool", {bool}),
        int: ("int", {int}),
        float: ("float", {int, float}),
        str: ("str", {str}),
    }
    for name, info in CustomerEvent.model_fields.items():
        ann = info.annotation
        nullable = False
        args = getattr(ann, "__args__", ())
        if args and len(args) == 2 and _NONE_T in args:
            nullable = True
            ann = next(a for a in args if a is not _NONE_T)
        types: set[type]
        if name == "event_time":
            kind, types = "time", {str}
        elif ann in base:
            kind, base_types = base[ann]
            types = set(base_types)
        else:
            return None
        lo: Any = None  # annotated_types bounds: int or float
        hi: Any = None
        for m in info.metadata:
            if isinstance(m, (Ge, MinLen)):
                lo = m.ge if isinstance(m, Ge) else m.min_length
            elif isinstance(m, (Le, MaxLen)):
                hi = m.le if isinstance(m, Le) else m.max_length
            elif not (
                isinstance(m, Strict) or (isinstance(m, BeforeValidator) and m.func in (json_integer, json_datetime))
            ):
                # The checks' exact types are pydantic's strict mode, and these validators only
                # narrow lax mode; a value of any other type goes to pydantic.
                return None
        if nullable:
            types.add(_NONE_T)
        default = _MISSING if info.is_required() else info.default
        if default is not _MISSING:
            types.add(_MISSING_T)
        checks.append(_FieldCheck(name, kind, frozenset(types), lo, hi, default))
    return checks


_CHECKS = _field_checks()
_ALL_FIELDS = itemgetter(*(c.name for c in _CHECKS)) if _CHECKS else None


def _value_ok(check: _FieldCheck, v: Any) -> bool:
    if type(v) not in check.types:
        return False
    if v is None or v is _MISSING:
        return True
    if check.kind == "str":
        return (check.lo is None or len(v) >= check.lo) and (check.hi is None or len(v) <= check.hi)
    if check.kind in ("int", "float"):
        return math.isfinite(v) and (check.lo is None or v >= check.lo) and (check.hi is None or v <= check.hi)
    return True


def _column_ok(check: _FieldCheck, values: Sequence[Any]) -> bool:
    """Whole-column check (the common case: every record fine)."""
    types = set(map(type, values))
    if not types <= check.types:
        return False
    if types & {_NONE_T, _MISSING_T}:
        values = [v for v in values if v is not None and v is not _MISSING]
        if not values:
            return True
    if check.kind == "str":
        lengths = list(map(len, values))
        return (check.lo is None or min(lengths) >= check.lo) and (check.hi is None or max(lengths) <= check.hi)
    if check.kind in ("int", "float"):
        lo, hi = min(values), max(values)
        return (
            math.isfinite(lo)
            and math.isfinite(hi)
            and (check.lo is None or lo >= check.lo)
            and (check.hi is None or hi <= check.hi)
        )
    return True


def _utc_iso(value: str) -> str | None:
    """``value`` parsed and re-written as pydantic + ``_to_utc`` would, or None if not canonical."""
    if not _UTC_TIME.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC).isoformat()
    except ValueError:
        return None


@dataclass
class _Decoded:
    """Valid rows of a micro-batch, in input order, as plain field dicts."""

    records: list[RawRecord]
    rows: list[dict[str, Any]]
    event_times: list[str]  # UTC ISO 8601, as ``CustomerEvent.event_time.isoformat()``
    failures: list[Failure]


def _decode_slow(rec: RawRecord) -> tuple[dict[str, Any] | None, str | None, Failure | None]:
    """One record through pydantic: the contract's own coercions and error messages."""
    if not rec.value:
        return None, None, Failure(rec, "decode", "EmptyValue", "record value is null or empty")
    try:
        ev = CustomerEvent.model_validate_json(rec.value)
    except ValidationError as exc:
        err = format_validation_error(exc, limit=len(exc.errors()))  # every missing field, not 10
        return None, None, Failure(rec, _stage_of(exc), "EventValidationError", str(err))
    return dict(ev.__dict__), ev.event_time.isoformat(), None


def _decode_fast(records: Sequence[RawRecord]) -> _Decoded:
    """Like :func:`decode_batch`, without building a pydantic object per record."""
    n = len(records)
    docs: list[Any] = [None] * n
    slow = [False] * n
    loads = orjson.loads
    for i, rec in enumerate(records):
        value = rec.value
        if not value or _CHECKS is None:
            slow[i] = True
            continue
        try:
            doc = loads(value)
        except orjson.JSONDecodeError:
            slow[i] = True
            continue
        if type(doc) is dict:
            docs[i] = doc
        else:
            slow[i] = True
    fast_idx = [i for i in range(n) if not slow[i]]
    times: list[str | None] = [None] * n
    checks, all_fields = _CHECKS, _ALL_FIELDS
    if fast_idx and checks is not None and all_fields is not None:  # no record is fast without checks
        fast_docs = [docs[i] for i in fast_idx]
        table: list[Sequence[Any]]
        try:  # one pass over the records for every field, when none is missing
            table = list(zip(*map(all_fields, fast_docs)))
        except KeyError:
            table = [[d.get(c.name, _MISSING) for d in fast_docs] for c in checks]
        for check, values in zip(checks, table):
            if check.kind == "time":
                for j, v in enumerate(values):
                    iso = _utc_iso(v) if type(v) is str else None
                    if iso is None:
                        slow[fast_idx[j]] = True
                    else:
                        times[fast_idx[j]] = iso
                continue
            if not _column_ok(check, values):
                for j, v in enumerate(values):
                    if not _value_ok(check, v):
                        slow[fast_idx[j]] = True
            if check.default is not _MISSING and _MISSING_T in set(map(type, values)):
                for d, v in zip(fast_docs, values):
                    if v is _MISSING:
                        d[check.name] = check.default
    out = _Decoded([], [], [], [])
    for i, rec in enumerate(records):
        if slow[i]:
            row, iso, failure = _decode_slow(rec)
            if failure is not None:
                out.failures.append(failure)
                continue
        else:
            row, iso = docs[i], times[i]
        out.records.append(rec)
        out.rows.append(row)  # type: ignore[arg-type]
        out.event_times.append(iso)  # type: ignore[arg-type]
    return out


def _row_columns(rows: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, np.ndarray]:
    """:func:`event_columns` over field dicts, extracted in one pass."""
    if not rows:
        return {name: np.empty(0) for name in names}
    get = itemgetter(*names)
    table = list(zip(*map(get, rows))) if len(names) > 1 else [tuple(map(get, rows))]
    cols: dict[str, np.ndarray] = {}
    for name, values in zip(names, table):
        sample = next((v for v in values if v is not None), None)
        if isinstance(sample, str):
            cols[name] = np.asarray(values, dtype=str)
        elif None in values:
            cols[name] = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        else:
            cols[name] = np.asarray(values, dtype=np.float64)
    return cols


def _customer_value(value_model: LoadedModel, columns: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Predicted customer value (USD, clipped at 0) of the given rows: one matrix operation."""
    pipeline = value_model.pipeline
    # A linear regressor can extrapolate below zero for new customers; value cannot be negative.
    return np.maximum(pipeline.predict({name: columns[name][rows] for name in pipeline.feature_names_in}), 0.0)


# An alert is its score's JSON with these members spliced in before the closing brace.
_REASONS_KEY = f',"{REASONS_FIELD}":'.encode()
_PREDICTED_VALUE_KEY = f',"{PREDICTED_VALUE_FIELD}":'.encode()
_VALUE_AT_RISK_KEY = f',"{VALUE_AT_RISK_FIELD}":'.encode()


def score_batch(
    model: LoadedModel,
    records: Sequence[RawRecord],
    now: datetime | None = None,
    value_model: LoadedModel | None = None,
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

    Returns
    -------
    BatchResult
        Scores in input order; each alert is its score document plus ``reasons``
        (and the value fields with ``value_model``).
    """
    now = now or datetime.now(UTC)
    decoded = _decode_fast(records)
    ok_records, rows, times, failures = decoded.records, decoded.rows, decoded.event_times, decoded.failures
    result = BatchResult()
    pipeline = model.pipeline
    names = pipeline.feature_names_in
    X = None
    columns: dict[str, np.ndarray] = {}
    if rows:
        try:
            columns = _row_columns(rows, names)
            X = pipeline.transform(columns)
        except (ValueError, TypeError):
            keep_r, keep_rows, keep_t, mats = [], [], [], []
            for rec, row, t in zip(ok_records, rows, times):
                try:
                    mats.append(pipeline.transform(_row_columns([row], names)))
                    keep_r.append(rec)
                    keep_rows.append(row)
                    keep_t.append(t)
                except (ValueError, TypeError) as exc:
                    failures.append(Failure(rec, "featurise", type(exc).__name__, str(exc)))
            ok_records, rows, times = keep_r, keep_rows, keep_t
            X = np.vstack(mats) if mats else None
            columns = _row_columns(rows, names) if rows else {}
    if X is not None and rows:
        proba = churn_probabilities(model, X)
        result.probabilities = proba
        threshold = pipeline.threshold
        scored_at = now.isoformat()
        labels = (proba >= threshold).tolist()
        dumps = orjson.dumps
        model_name, model_version = model.model_name, model.model_version
        scores = result.scores
        for row, t, p, label in zip(rows, times, proba.tolist(), labels):
            cid = row["customer_id"]
            scores.append(
                (
                    cid.encode(),
                    dumps(
                        {
                            "event_id": row["event_id"],
                            "event_time": t,
                            "schema_version": SCHEMA_VERSION,
                            "customer_id": cid,
                            "churn_probability": p,
                            "churn_label": label,
                            "threshold": threshold,
                            "model_name": model_name,
                            "model_version": model_version,
                            "scored_at": scored_at,
                        }
                    ),
                )
            )
        alert_rows = np.flatnonzero(proba >= threshold)
        result.alert_rows = alert_rows
        result.event_times = times
        result.columns = columns
        if len(alert_rows):
            result.alert_event_ids = [rows[i]["event_id"] for i in alert_rows.tolist()]
            reasons = reason_codes(model, X[alert_rows])
            if value_model is None:
                for i, r in zip(alert_rows.tolist(), reasons):
                    key, value = scores[i]
                    # Same bytes as dumping the score document with "reasons" appended.
                    result.alerts.append((key, value[:-1] + _REASONS_KEY + dumps(r) + b"}"))
            else:
                value_usd = _customer_value(value_model, columns, alert_rows)
                at_risk = proba[alert_rows] * value_usd
                for i, r, v, var in zip(alert_rows.tolist(), reasons, value_usd.tolist(), at_risk.tolist()):
                    key, value = scores[i]
                    result.alerts.append(
                        (
                            key,
                            value[:-1]
                            + _REASONS_KEY
                            + dumps(r)
                            + _PREDICTED_VALUE_KEY
                            + dumps(v)
                            + _VALUE_AT_RISK_KEY
                            + dumps(var)
                            + b"}",
                        )
                    )
    result.failures = failures
    result.dead_letters = [dead_letter(f, now) for f in failures]
    return result
