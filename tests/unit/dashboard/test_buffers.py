"""The live buffers: bounded size, events/s, end-to-end latency, distribution and alert rows."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from dashboard.live import LiveBuffers, format_reasons, latency_ms
from schemas.topics import Topics

T0 = 1_700_000_000.0  # a whole UNIX second
EVENT_TIME = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)


def score(i: int, p: float = 0.5, latency_s: float = 0.2, **extra) -> dict:
    return {
        "event_id": f"e{i}",
        "event_time": EVENT_TIME.isoformat(),
        "schema_version": 1,
        "customer_id": f"c{i}",
        "churn_probability": p,
        "churn_label": p >= 0.5,
        "threshold": 0.5,
        "model_name": "churn-classifier",
        "model_version": "3",
        "scored_at": (EVENT_TIME + timedelta(seconds=latency_s)).isoformat().replace("+00:00", "Z"),
        **extra,
    }


def buffers(**kw) -> LiveBuffers:
    return LiveBuffers(clock=lambda: T0, **kw)


def test_latency_is_scored_at_minus_event_time_in_ms():
    assert latency_ms(score(0, latency_s=0.25)) == pytest.approx(250.0)
    assert latency_ms({"scored_at": "garbage", "event_time": EVENT_TIME.isoformat()}) is None
    assert latency_ms({}) is None


def test_buffers_stay_bounded_under_many_records():
    b = buffers(max_scores=10, max_alerts=5, max_recent=100, window_s=60)
    for i in range(20_000):
        now = T0 + i / 100  # 100 scores per second over 200 s
        b.add_score(score(i, p=(i % 100) / 100), now=now)
        if i % 10 == 0:
            b.add_alert(score(i, p=0.9, reasons=[]), now=now)
        if i % 100 == 0:
            b.add_lag(i, now=now)
    snap = b.snapshot(now=T0 + 200)
    assert len(snap.scores) == 10 and len(snap.alerts) == 5
    assert len(snap.probabilities) == 100
    assert len(b._buckets) <= 61 and len(b._lag) <= 60 and len(b._latencies) <= 100
    assert len(snap.times) == 60  # the window, not the whole run
    assert snap.scores_total == 20_000 and snap.alerts_total == 2_000
    assert snap.scores[0]["customer_id"] == "c19999"  # newest first
    # Memory does not grow with the number of records once the deques are full.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000, 25_000):
            b.add_score(score(i), now=T0 + i / 100)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, f"buffers grew by {grown} bytes over 5,000 records"
    assert len(b._scores) == 10 and len(b._latencies) == 100 and len(b._buckets) <= 61


def test_events_per_second_per_bucket_and_recent_rate():
    b = buffers()
    counts = [3, 0, 7, 10, 5, 8]  # scores received in seconds T0 .. T0+5
    i = 0
    for sec, n in enumerate(counts):
        for k in range(n):
            b.add_score(score(i), now=T0 + sec + k / (n + 1))
            i += 1
    snap = b.snapshot(now=T0 + 6.5)  # second T0+6 is still running: not shown
    assert snap.events_per_s == counts
    assert snap.times == [T0 + s for s in range(6)]
    assert snap.rate_per_s == pytest.approx(sum(counts[-5:]) / 5)
    assert snap.scores_total == sum(counts)


def test_recent_rate_divides_by_elapsed_seconds_right_after_start():
    b = buffers()
    for k in range(8):
        b.add_score(score(k), now=T0 + 0.1 * k)
    snap = b.snapshot(now=T0 + 1.2)  # one complete second since the feed started
    assert snap.rate_per_s == pytest.approx(8.0)
    assert b.snapshot(now=T0 + 0.5).rate_per_s == 0.0  # nothing complete yet


def test_latency_per_second_and_percentiles():
    b = buffers()
    for k, lat in enumerate([0.1, 0.2, 0.3, 0.4]):
        b.add_score(score(k, latency_s=lat), now=T0 + 0.1)
    b.add_score(score(9, latency_s=1.0), now=T0 + 2.5)
    snap = b.snapshot(now=T0 + 3)
    assert snap.latency_mean_ms[0] == pytest.approx(250.0)
    assert snap.latency_max_ms[0] == pytest.approx(400.0)
    assert snap.latency_mean_ms[1] is None and snap.events_per_s[1] == 0  # a quiet second is a gap, not 0 ms
    assert snap.latency_mean_ms[2] == pytest.approx(1000.0)
    assert snap.latency_p50_ms == pytest.approx(300.0)
    assert snap.latency_p95_ms == pytest.approx(1000.0)
    assert snap.scores[0]["latency_ms"] == pytest.approx(1000.0)


def test_distribution_keeps_the_most_recent_probabilities():
    b = buffers(max_recent=4)
    for k, p in enumerate([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]):
        b.add_score(score(k, p=p), now=T0)
    assert b.snapshot(now=T0 + 1).probabilities == [0.3, 0.4, 0.5, 0.6]


def test_alert_rows_carry_reasons_and_blank_value_at_risk_when_absent():
    b = buffers()
    reasons = [
        {"feature": "contract=Month-to-month", "contribution": 0.412},
        {"feature": "tenure_months", "contribution": 0.2},
    ]
    b.add_alert(score(1, p=0.8, reasons=reasons), now=T0)
    b.add_alert(score(2, p=0.9, reasons=reasons[:1], value_at_risk_usd=1234.567), now=T0)
    rows = b.snapshot(now=T0 + 1).alerts
    assert rows[0]["customer_id"] == "c2" and rows[0]["value_at_risk_usd"] == 1234.57
    assert rows[1]["value_at_risk_usd"] is None
    assert rows[1]["reasons"] == "contract=Month-to-month (+0.41); tenure_months (+0.20)"
    assert format_reasons(None) == ""


def test_records_are_routed_by_topic_and_bad_bytes_are_counted():
    b = buffers()
    b.add_record(Topics.SCORES, orjson.dumps(score(1)), now=T0)
    b.add_record(Topics.ALERTS, orjson.dumps(score(2, p=0.9, reasons=[])), now=T0)
    b.add_record(Topics.ALERTS + "-bench", orjson.dumps(score(3, p=0.9)), now=T0)
    b.add_record(Topics.SCORES, b"not json", now=T0)
    b.add_record(Topics.SCORES, None, now=T0)
    b.add_record(Topics.SCORES, b"[1, 2]", now=T0)
    snap = b.snapshot(now=T0 + 1)
    assert (snap.scores_total, snap.alerts_total, snap.bad_records) == (1, 2, 3)


def test_lag_samples_and_the_reason_when_unknown():
    b = buffers()
    assert b.snapshot(now=T0).lag is None and b.snapshot(now=T0).lag_note.startswith("n/a")
    b.add_lag(None, "n/a: the broker does not answer committed offsets", now=T0)
    b.add_lag(42, now=T0 + 2)
    snap = b.snapshot(now=T0 + 3)
    assert snap.lag == 42 and snap.lag_note is None
    assert snap.lag_values == [None, 42] and snap.lag_times == [T0, T0 + 2]


def test_records_produced_before_the_dashboard_started_are_skipped_not_counted():
    """Issue 18: at start the feed counted a batch produced before it (7,813 "received" on first load)."""
    b = buffers()  # started at T0
    started_ms = int(T0 * 1000)
    for i in range(50):  # the tail of a batch the broker served from before the start
        b.add_record(Topics.SCORES, orjson.dumps(score(i)), now=T0 + 0.1, timestamp_ms=started_ms - 5_000 + i)
    b.add_record(Topics.ALERTS, orjson.dumps(score(99, p=0.9)), now=T0 + 0.1, timestamp_ms=started_ms - 1)
    for i in range(3):
        b.add_record(Topics.SCORES, orjson.dumps(score(100 + i)), now=T0 + 1.2, timestamp_ms=started_ms + 1_200)
    b.add_record(Topics.SCORES, orjson.dumps(score(200)), now=T0 + 1.3, timestamp_ms=None)  # no timestamp: counted
    snap = b.snapshot(now=T0 + 3)
    assert snap.scores_total == 4 and snap.alerts_total == 0
    assert snap.skipped_before_start == 51
    assert [r["customer_id"] for r in snap.scores] == ["c200", "c102", "c101", "c100"]
    assert sum(snap.events_per_s) == 4 and snap.started_at == T0
