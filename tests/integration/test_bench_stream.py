"""``churn bench stream`` on the session stack with a small event count: fields, no loss, ratios.

Throughput figures are not asserted here (timed assertions belong in the benchmark);
only that every contender scored every event and the ratios come from the measured rates.
"""

from __future__ import annotations

import orjson
import pytest

pytestmark = pytest.mark.integration


def test_bench_stream_small_run(stack_settings, tmp_path):
    from churn_stream.bench.stream import run_bench_stream

    out = tmp_path / "bench.json"
    result = run_bench_stream(stack_settings, events=5000, json_path=out, latency_s=3.0)

    saved = orjson.loads(out.read_text())
    for name in (
        "naive_eps",
        "relay_eps",
        "worker_eps",
        "ratio_vs_naive",
        "ratio_vs_relay",
        "p50_ms",
        "p99_ms",
        "events",
        "broker_mode",
        "load_avg_1m_start",
        "load_avg_1m_end",
    ):
        assert name in saved, name
    assert saved["events"] == 5000 and saved["broker_mode"] == "ephemeral"
    for kind in ("naive", "relay", "worker"):
        figures = saved["contenders"][kind]
        assert figures["scored"] == 5000, kind  # no loss
        assert figures["eps"] > 0
    assert saved["contenders"]["worker"]["latency_scored"] == saved["contenders"]["worker"]["latency_events"]
    assert saved["ratio_vs_naive"] == pytest.approx(saved["worker_eps"] / saved["naive_eps"], abs=0.01)
    assert saved["ratio_vs_relay"] == pytest.approx(saved["worker_eps"] / saved["relay_eps"], abs=0.01)
    assert 0 < saved["p50_ms"] <= saved["p99_ms"]
    assert result["worker_eps"] == saved["worker_eps"]
    assert isinstance(saved["busy"], bool)  # flags a run on a loaded machine
