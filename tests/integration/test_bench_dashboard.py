"""``churn bench dashboard`` for one minute on the real stack: flat memory, callbacks inside their interval.

The full soak (one hour at 2,000 events/s) is the command itself; this is its fast form.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_one_minute_at_2000_events_per_s_keeps_memory_flat_and_callbacks_within_their_interval(
    stack_settings, tmp_path
):
    from churn_stream.bench.dashboard import FLAT_TOLERANCE_MB, run_bench_dashboard

    out = tmp_path / "bench-dashboard.json"
    result = run_bench_dashboard(stack_settings, duration_s=60, rate=2000, json_path=out)

    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["rate_per_s"] >= 1800, result["rate_per_s"]
    assert result["rss_growth_after_warmup_mb"] <= FLAT_TOLERANCE_MB, result
    assert result["memory_flat"]
    # Every timer-driven callback of each tab was measured and stayed under its refresh interval.
    assert {c["tab"] for c in result["callbacks"].values()} == {"live", "models", "quality"}
    for name, c in result["callbacks"].items():
        assert c["statuses"] == {"200": c["polls"]}, (name, c)
        assert c["server_max_ms"] < c["interval_ms"], (name, c)
    assert result["callbacks"]["kpi-scores"]["polls"] >= 55
    # The page kept updating: the live count rose, and it counts what was produced.
    assert result["kept_updating"], result
    assert result["live_count_last"] >= 0.8 * result["scores_produced"]
    assert result["passed"]
