"""The pure parts of ``churn bench dashboard``: finding timer callbacks, memory and update verdicts."""

from __future__ import annotations

import pytest

from churn_stream.bench.dashboard import interval_periods, timer_callbacks, warmup_s
from churn_stream.bench.dashboard_verdicts import rss_summary, updates_summary

LAYOUT = {
    "type": "Div",
    "namespace": "dash_html_components",
    "props": {
        "children": [
            {"type": "Interval", "namespace": "dash_core_components", "props": {"id": "tick-live", "interval": 1000}},
            {
                "type": "Interval",
                "namespace": "dash_core_components",
                "props": {"id": "tick-models", "interval": 10000},
            },
            {"type": "Div", "namespace": "dash_html_components", "props": {"id": "x", "children": "text"}},
        ]
    },
}
DEPS = [
    {
        "output": "..kpi-scores.children...graph-rate.figure..",
        "inputs": [{"id": "tick-live", "property": "n_intervals"}, {"id": "tabs", "property": "value"}],
        "state": [],
    },
    {
        "output": "dq-summary.children",
        "inputs": [{"id": "tick-models", "property": "n_intervals"}, {"id": "tabs", "property": "value"}],
        "state": [],
    },
    {
        "output": "score-result.children",
        "inputs": [{"id": "form-submit", "property": "n_clicks"}],
        "state": [{"id": "form-customer_id", "property": "value"}],
    },
]


def test_timer_callbacks_are_found_with_their_interval_and_a_renderer_request():
    assert interval_periods(LAYOUT) == {"tick-live": 1000, "tick-models": 10000}
    cbs = timer_callbacks(DEPS, interval_periods(LAYOUT))
    assert [(c["name"], c["interval_ms"], c["trigger"]) for c in cbs] == [
        ("kpi-scores", 1000, "tick-live"),
        ("dq-summary", 10000, "tick-models"),
    ]
    live = cbs[0]["body"]
    assert live["outputs"] == [{"id": "kpi-scores", "property": "children"}, {"id": "graph-rate", "property": "figure"}]
    assert live["changedPropIds"] == ["tick-live.n_intervals"]
    assert cbs[1]["body"]["outputs"] == {"id": "dq-summary", "property": "children"}  # one output: not a list


def test_memory_verdict_separates_a_step_from_a_steady_leak():
    step = rss_summary([(t, 200.0 + (10 if t > 100 else 0)) for t in range(0, 400, 5)], warm_s=30)
    assert step["rss_growth_after_warmup_mb"] == 10 and step["rss_max_mb"] == 210
    assert step["rss_slope_last_half_mb_per_h"] == pytest.approx(0, abs=1e-6)
    leak = rss_summary([(t, 200.0 + t / 100) for t in range(0, 400, 5)], warm_s=30)
    assert leak["rss_slope_last_half_mb_per_h"] == pytest.approx(36.0)
    with pytest.raises(RuntimeError, match="warm-up"):
        rss_summary([(0, 1.0), (5, 1.0)], warm_s=30)


def test_updates_verdict_flags_a_stall():
    rising = updates_summary([(t, 100 * t) for t in range(10)])
    assert rising["kept_updating"] and rising["live_count_rises"] == 9
    stalled = updates_summary([(t, 100 * min(t, 3)) for t in range(10)])
    assert not stalled["kept_updating"] and stalled["live_longest_without_rise_s"] == 6


def test_warmup_is_a_tenth_of_the_run_between_10_s_and_5_min():
    assert (warmup_s(60), warmup_s(1500), warmup_s(3600)) == (10, 150, 300)
