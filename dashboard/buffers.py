"""The live tab's state: bounded, lock-protected buffers of score and alert records.

:class:`LiveBuffers` holds ``collections.deque(maxlen=...)`` buffers and per-second
counters, so memory stays flat however long the dashboard runs. The Kafka consumer
(:class:`~dashboard.live.LiveFeed`) adds records; Dash callbacks only call
:meth:`LiveBuffers.snapshot`, which copies under the lock.

Counters count what was produced after the dashboard started: a record whose Kafka
timestamp is older (a broker can serve the tail of the batch it held at start, since
its "latest" offset may point inside that batch) is counted apart as skipped and shown
nowhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.events import REASONS_FIELD, VALUE_AT_RISK_FIELD
from schemas.topics import Topics

logger = logging.getLogger(__name__)

#: Seconds over which the headline events/s figure is averaged.
RATE_WINDOW_S = 5


def _parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp as an aware UTC datetime, or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def latency_ms(record: dict[str, Any]) -> float | None:
    """End-to-end latency of a score record: ``scored_at - event_time`` in milliseconds.

    Returns
    -------
    float or None
        None when either timestamp is missing or unreadable.
    """
    scored = _parse_time(record.get("scored_at"))
    happened = _parse_time(record.get("event_time"))
    if scored is None or happened is None:
        return None
    return (scored - happened).total_seconds() * 1000.0


def format_reasons(reasons: Any) -> str:
    """An alert's reason codes as one readable cell: ``"contract=Month-to-month (+0.41); tenure_months (+0.22)"``."""
    if not isinstance(reasons, list):
        return ""
    parts = []
    for r in reasons:
        if isinstance(r, dict) and "feature" in r:
            c = r.get("contribution")
            parts.append(f"{r['feature']} (+{c:.2f})" if isinstance(c, (int, float)) else str(r["feature"]))
    return "; ".join(parts)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def _hms(value: Any) -> str:
    t = _parse_time(value)
    return t.strftime("%H:%M:%S.%f")[:-3] if t is not None else ""


@dataclass(frozen=True)
class LiveSnapshot:
    """A consistent copy of the live figures at one instant (plain lists and numbers).

    Attributes
    ----------
    scores, alerts : list of dict
        Latest score and alert rows, newest first (table-ready).
    probabilities : list of float
        Churn probabilities of the most recent scores (for the distribution).
    times : list of float
        One entry per complete second of the window, UNIX seconds.
    events_per_s : list of int
        Scores received in each second of ``times``.
    latency_mean_ms, latency_max_ms : list of float or None
        End-to-end latency per second of ``times`` (None in seconds without scores).
    lag_times : list of float
    lag_values : list of int or None
        Sampled consumer lag of the scoring group on ``customers`` (None when unknown).
    lag_note : str or None
        Why the lag is not available ("n/a: ..."), None when it is.
    rate_per_s : float
        Scores per second over the last :data:`RATE_WINDOW_S` complete seconds.
    latency_p50_ms, latency_p95_ms : float or None
        Over the most recent scores.
    scores_total, alerts_total, bad_records : int
        Records produced since the dashboard started.
    started_at : float
        When the dashboard started, UNIX seconds: the counters count records from then on.
    skipped_before_start : int
        Records older than ``started_at`` the broker served anyway, counted nowhere else.
    status : str
        The consumer's state (``starting``, ``connected``, or the last error).
    """

    scores: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    probabilities: list[float]
    times: list[float]
    events_per_s: list[int]
    latency_mean_ms: list[float | None]
    latency_max_ms: list[float | None]
    lag_times: list[float]
    lag_values: list[int | None]
    lag_note: str | None
    rate_per_s: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    scores_total: int
    alerts_total: int
    bad_records: int
    status: str
    started_at: float = 0.0
    skipped_before_start: int = 0

    @property
    def lag(self) -> int | None:
        """The latest lag sample, None when unknown."""
        return self.lag_values[-1] if self.lag_values else None


class LiveBuffers:
    """Bounded buffers and per-second aggregates of the score and alert streams.

    Thread-safe: the consumer thread adds, callbacks take snapshots; both under one lock.
    Every container is bounded, so memory does not grow with the number of records.

    Parameters
    ----------
    max_scores : int, default 50
        Score rows kept for the rolling feed.
    max_alerts : int, default 200
        Alert rows kept for the alert table.
    max_recent : int, default 2000
        Probabilities and latencies kept for the distribution and percentiles.
    window_s : int, default 300
        Seconds of per-second history (events/s, latency, lag).
    clock : callable, default time.time
        UNIX seconds; injectable for tests.
    """

    def __init__(
        self,
        *,
        max_scores: int = 50,
        max_alerts: int = 200,
        max_recent: int = 2000,
        window_s: int = 300,
        clock=time.time,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._scores: deque[dict[str, Any]] = deque(maxlen=max_scores)
        self._alerts: deque[dict[str, Any]] = deque(maxlen=max_alerts)
        self._probabilities: deque[float] = deque(maxlen=max_recent)
        self._latencies: deque[float] = deque(maxlen=max_recent)
        # [second, scores, latency samples, latency sum ms, latency max ms]
        self._buckets: deque[list] = deque(maxlen=window_s + 1)
        self._lag: deque[tuple[float, int | None]] = deque(maxlen=window_s)
        self._lag_note: str | None = "n/a: not sampled yet"
        self._started_at = float(clock())
        self._started = int(self._started_at)
        # Kafka timestamps are milliseconds; a record stamped before this was produced before the start.
        self._started_ms = int(self._started_at * 1000)
        self._skipped = 0
        self._scores_total = 0
        self._alerts_total = 0
        self._bad = 0
        self._status = "starting"

    # -- writers (the consumer thread)
    def add_record(
        self,
        topic: str,
        value: bytes | None,
        now: float | None = None,
        timestamp_ms: int | None = None,
        alert: bool | None = None,
    ) -> None:
        """Decode one record value of ``topic`` (scores or alerts) and add it; undecodable ones are counted.

        Parameters
        ----------
        topic : str
            ``churn-alerts`` (with any suffix) or a scores topic.
        value : bytes or None
            The record value, JSON.
        now : float, optional
            Arrival time, UNIX seconds; the buffers' clock by default.
        timestamp_ms : int, optional
            The record's Kafka timestamp, milliseconds. Older than the dashboard's start:
            counted as skipped, not added (the broker served it from before the start).
            None or negative (no timestamp): added.
        alert : bool, optional
            Whether ``topic`` is the alerts topic; default: its name starts with ``churn-alerts``
            (Telco's). Another data set's is ``<dataset>.churn-alerts``: the feed says which.
        """
        if timestamp_ms is not None and 0 <= timestamp_ms < self._started_ms:
            with self._lock:
                self._skipped += 1
            return
        try:
            doc = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            with self._lock:
                self._bad += 1
            return
        if alert if alert is not None else topic.startswith(Topics.ALERTS):
            self.add_alert(doc, now)
        else:
            self.add_score(doc, now)

    def add_score(self, record: dict[str, Any], now: float | None = None) -> None:
        """Add one ``churn-scores`` record (a :class:`~schemas.events.ScoreEvent` as a dict)."""
        now = self._clock() if now is None else now
        p = record.get("churn_probability")
        p = float(p) if isinstance(p, (int, float)) else None
        lat = latency_ms(record)
        row = {
            "customer_id": record.get("customer_id"),
            "churn_probability": None if p is None else round(p, 4),
            "churn_label": bool(record.get("churn_label")),
            "model_version": record.get("model_version"),
            "scored_at": _hms(record.get("scored_at")),
            "latency_ms": None if lat is None else round(lat, 1),
        }
        sec = int(now)
        with self._lock:
            self._scores_total += 1
            self._scores.appendleft(row)
            if p is not None:
                self._probabilities.append(p)
            if lat is not None:
                self._latencies.append(lat)
            if not self._buckets or sec > self._buckets[-1][0]:
                self._buckets.append([sec, 0, 0, 0.0, None])
            bucket = self._buckets[-1]  # a late clock reading joins the current second
            bucket[1] += 1
            if lat is not None:
                bucket[2] += 1
                bucket[3] += lat
                bucket[4] = lat if bucket[4] is None else max(bucket[4], lat)

    def add_alert(self, record: dict[str, Any], now: float | None = None) -> None:
        """Add one ``churn-alerts`` record; ``value_at_risk_usd`` stays None when the record has none."""
        p = record.get("churn_probability")
        var = record.get(VALUE_AT_RISK_FIELD)
        row = {
            "customer_id": record.get("customer_id"),
            "churn_probability": round(float(p), 4) if isinstance(p, (int, float)) else None,
            "threshold": round(float(record["threshold"]), 4)
            if isinstance(record.get("threshold"), (int, float))
            else None,
            REASONS_FIELD: format_reasons(record.get(REASONS_FIELD)),
            VALUE_AT_RISK_FIELD: round(float(var), 2) if isinstance(var, (int, float)) else None,
            "model_version": record.get("model_version"),
            "scored_at": _hms(record.get("scored_at")),
        }
        with self._lock:
            self._alerts_total += 1
            self._alerts.appendleft(row)

    def add_lag(self, lag: int | None, note: str | None = None, now: float | None = None) -> None:
        """Record one consumer-lag sample; ``lag=None`` with a ``note`` says why it is unknown."""
        now = self._clock() if now is None else now
        with self._lock:
            self._lag.append((now, lag))
            self._lag_note = note if lag is None else None

    def set_status(self, status: str) -> None:
        """The consumer's state, shown on the page."""
        with self._lock:
            self._status = status

    # -- reader (callbacks)
    def snapshot(self, now: float | None = None) -> LiveSnapshot:
        """Copy the buffers under the lock, then aggregate outside it."""
        now = self._clock() if now is None else now
        with self._lock:
            scores = list(self._scores)
            alerts = list(self._alerts)
            probabilities = list(self._probabilities)
            latencies = sorted(self._latencies)
            buckets = [list(b) for b in self._buckets]
            lag = list(self._lag)
            lag_note = self._lag_note
            totals = (self._scores_total, self._alerts_total, self._bad, self._skipped)
            status = self._status
        cur = int(now)
        first = max(cur - self.window_s, self._started)
        by_sec = {b[0]: b for b in buckets}
        times, counts, means, maxes = [], [], [], []
        for sec in range(first, cur):  # complete seconds only
            b = by_sec.get(sec)
            times.append(float(sec))
            counts.append(b[1] if b else 0)
            means.append(b[3] / b[2] if b and b[2] else None)
            maxes.append(b[4] if b else None)
        span = max(1, min(RATE_WINDOW_S, cur - self._started))
        recent = sum(by_sec[s][1] for s in range(cur - span, cur) if s in by_sec)
        return LiveSnapshot(
            scores=scores,
            alerts=alerts,
            probabilities=probabilities,
            times=times,
            events_per_s=counts,
            latency_mean_ms=means,
            latency_max_ms=maxes,
            lag_times=[t for t, _ in lag],
            lag_values=[v for _, v in lag],
            lag_note=lag_note,
            rate_per_s=recent / span,
            latency_p50_ms=_percentile(latencies, 0.5),
            latency_p95_ms=_percentile(latencies, 0.95),
            scores_total=totals[0],
            alerts_total=totals[1],
            bad_records=totals[2],
            status=status,
            started_at=self._started_at,
            skipped_before_start=totals[3],
        )
