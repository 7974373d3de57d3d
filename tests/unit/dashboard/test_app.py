"""The live tab's rendering: plain-dict figures that plotly accepts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go

from dashboard.live import LiveBuffers
from dashboard.tab_live import live_outputs


def _filled_buffers(now: float) -> LiveBuffers:
    buffers = LiveBuffers(clock=lambda: now - 300)  # started 300 s ago: a full window of history
    for s in range(300):
        t = now - 300 + s
        wall = datetime.fromtimestamp(t, tz=UTC)
        for k in range(20):
            p = (k + 0.5) / 20
            buffers.add_score(
                {
                    "customer_id": f"C{k}",
                    "churn_probability": p,
                    "churn_label": p >= 0.5,
                    "model_version": "3",
                    "scored_at": wall.isoformat(),
                    "event_time": (wall - timedelta(milliseconds=25)).isoformat(),
                },
                now=t,
            )
        buffers.add_alert(
            {
                "customer_id": "C1",
                "churn_probability": 0.9,
                "threshold": 0.5,
                "reasons": [{"feature": "contract", "contribution": 0.4}],
                "value_at_risk_usd": 10.0,
            }
        )
        buffers.add_lag(s, now=t)
    return buffers


def test_live_figures_are_valid_plotly_figures_with_the_window_and_a_binned_distribution():
    now = time.time()
    out = live_outputs(_filled_buffers(now).snapshot(now=now))
    rate, latency, lag, dist = (go.Figure(f) for f in out[7:11])  # plotly validates every property
    assert len(rate.data[0].x) == 300 and set(rate.data[0].y) == {20}
    assert [t.name for t in latency.data] == ["mean", "max"]
    assert latency.data[0].y[-1] == 25.0
    assert lag.data[0].y[-1] == 299
    assert dist.data[0].type == "bar" and sum(dist.data[0].y) == 2000  # the last 2,000 scores, in 20 bins
    assert list(dist.data[0].y[:2]) == [100, 100]
    assert out[0] == "6,000" and out[1] == "300"
