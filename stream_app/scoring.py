"""The scoring hot path: decode a micro-batch, build one matrix, score it once, encode results.

Pure functions over bytes and arrays, no I/O: the Faust worker, the benchmark and
the tests all call the same code.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from schemas.events import SCHEMA_VERSION, CustomerEvent, format_validation_error
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
    """

    scores: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    alerts: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    probabilities: np.ndarray = field(default_factory=lambda: np.empty(0))
    failures: list[Failure] = field(default_factory=list)


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
            err = format_validation_error(exc)
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
    now = now or datetime.now(timezone.utc)
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


def _reasons(model: LoadedModel, X: np.ndarray, k: int = 3) -> list[list[dict[str, Any]]]:
    contrib_fn = getattr(model.pipeline.model, "feature_contributions", None)
    if contrib_fn is None or len(X) == 0:
        return [[] for _ in range(len(X))]
    contrib = contrib_fn(X)
    names = model.pipeline.feature_names_out
    top = np.argsort(-contrib, axis=1)[:, :k]
    return [
        [{"feature": names[j], "contribution": float(contrib[i, j])} for j in top[i] if contrib[i, j] > 0]
        for i in range(len(X))
    ]


def score_batch(model: LoadedModel, records: Sequence[RawRecord], now: datetime | None = None) -> BatchResult:
    """Score one micro-batch with one matrix operation.

    Invalid records become dead letters; if featurisation fails for the batch, rows
    are retried one by one so only the offending ones are dead-lettered.

    Parameters
    ----------
    model : LoadedModel
    records : sequence of RawRecord

    Returns
    -------
    BatchResult
    """
    now = now or datetime.now(timezone.utc)
    ok_records, events, failures = decode_batch(records)
    result = BatchResult()
    pipeline = model.pipeline
    names = pipeline.feature_names_in
    X = None
    if events:
        try:
            X = pipeline.transform(event_columns(events, names))
        except (ValueError, TypeError):
            keep_r, keep_e, rows = [], [], []
            for rec, ev in zip(ok_records, events):
                try:
                    rows.append(pipeline.transform(event_columns([ev], names)))
                    keep_r.append(rec)
                    keep_e.append(ev)
                except (ValueError, TypeError) as exc:
                    failures.append(Failure(rec, "featurise", type(exc).__name__, str(exc)))
            ok_records, events = keep_r, keep_e
            X = np.vstack(rows) if rows else None
    if X is not None and len(events):
        proba = pipeline.model.predict_proba(X)[:, 1]
        result.probabilities = proba
        threshold = pipeline.threshold
        scored_at = now.isoformat()
        alert_rows = np.flatnonzero(proba >= threshold)
        for ev, p in zip(events, proba.tolist()):
            doc = {
                "event_id": ev.event_id,
                "event_time": ev.event_time.isoformat(),
                "schema_version": SCHEMA_VERSION,
                "customer_id": ev.customer_id,
                "churn_probability": p,
                "churn_label": p >= threshold,
                "threshold": threshold,
                "model_name": model.model_name,
                "model_version": model.model_version,
                "scored_at": scored_at,
            }
            result.scores.append((ev.customer_id.encode(), orjson.dumps(doc)))
        if len(alert_rows):
            reasons = _reasons(model, X[alert_rows])
            for i, r in zip(alert_rows.tolist(), reasons):
                doc = orjson.loads(result.scores[i][1])
                doc["reasons"] = r
                result.alerts.append((result.scores[i][0], orjson.dumps(doc)))
    result.failures = failures
    result.dead_letters = [dead_letter(f, now) for f in failures]
    return result
