"""Fault injection on stacks of their own: every fault loses nothing (``pytest -m faults``).

The scenarios are the ones ``churn bench faults`` runs (churn_stream/bench/faults/): at
least 10,000 events in flight through a real worker while the broker restarts, the worker
is killed, a second worker joins and leaves, a worker starts on a backlog of one-record
batches, malformed records arrive, corrupt champions are announced, and S3 or MLflow go
down during a batch cycle. Scenarios 1-6 share one stack with a durable broker; 7-8 share
one with an in-memory broker (a durable Tansu keeps its topics in the S3 that scenario 7
stops). No timing is asserted.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.faults, pytest.mark.integration]

EVENTS = 10_000


@pytest.fixture(scope="module")
def workdir():
    path = Path(tempfile.mkdtemp(prefix="churn-test-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def stream_env(workdir):
    from churn_stream.bench.faults import fault_stack

    with fault_stack(workdir / "stream", ephemeral=False) as env:
        yield env


@pytest.fixture(scope="module")
def batch_env(workdir):
    from churn_stream.bench.faults import fault_stack

    with fault_stack(workdir / "batch", ephemeral=True) as env:
        yield env


WORKER_EVENTS = re.compile(r"revoked|assigned|recovered|rebalance|shutdown|Signal received|WARNING|ERROR")


def check(result, env) -> None:
    print(json.dumps(result.as_dict()))
    if not result.passed:
        # CI keeps no files: its report shows what the scenario's workers did.
        for log in sorted((env.workdir / "logs").glob(f"worker-churn-fault-{result.scenario}-*.log")):
            lines = [line for line in log.read_text(errors="replace").splitlines() if WORKER_EVENTS.search(line)]
            print(f"--- {log.name}: {len(lines)} rebalance/shutdown/warning lines, last 60")
            print("\n".join(line[:300] for line in lines[-60:]))
    assert result.lost == 0, result.as_dict()
    assert result.produced >= EVENTS, result.as_dict()
    assert result.scored + result.lost == result.produced - result.detail["malformed"], result.as_dict()
    assert result.alert_duplicates == 0, result.as_dict()  # an alert at most once per event, whatever the fault
    assert result.detail["alerts_missing"] == 0, result.as_dict()
    failed = [name for name, ok in result.checks.items() if not ok]
    assert not failed, result.as_dict()
    assert result.passed, result.as_dict()


def test_broker_stopped_for_30_s_mid_stream_loses_nothing(stream_env):
    from churn_stream.bench.faults import broker_restart

    result = broker_restart(stream_env, EVENTS)
    check(result, stream_env)
    assert result.detail["producer_send_failures"] > 0  # the outage really hit the producer


def test_worker_killed_mid_stream_and_replaced_loses_nothing(stream_env):
    from churn_stream.bench.faults import worker_kill

    result = worker_kill(stream_env, EVENTS)
    check(result, stream_env)
    assert result.alerts > 1000  # many alerting events went through the kill, none alerted twice


def test_second_worker_joins_shares_partitions_and_leaves(stream_env):
    from churn_stream.bench.faults import worker_join_leave

    result = worker_join_leave(stream_env, EVENTS)
    check(result, stream_env)
    assert sorted(result.detail["assignment_while_shared"]) == [2, 2]


def test_worker_drains_a_backlog_of_small_batches_on_the_durable_broker(stream_env):
    """The durable Tansu answers a 10 ms fetch empty when reading S3 takes longer: a worker
    started on this backlog never scored a record before its fetch wait adapted."""
    from churn_stream.bench.faults import durable_backlog

    result = durable_backlog(stream_env, EVENTS)
    check(result, stream_env)


def test_malformed_records_of_ten_kinds_are_all_dead_lettered(stream_env):
    from churn_stream.bench.faults import MALFORMED_EVERY, malformed_events

    result = malformed_events(stream_env, EVENTS)
    check(result, stream_env)
    assert result.dead_lettered == result.detail["malformed"] == EVENTS // MALFORMED_EVERY
    assert result.duplicates == 0


def test_corrupt_artifacts_announced_keep_the_champion_and_scoring(stream_env):
    from churn_stream.bench.faults import corrupt_artifact

    result = corrupt_artifact(stream_env, EVENTS)
    check(result, stream_env)
    assert result.detail["model_version"] == stream_env.champion["model_version"]
    assert result.detail["reloads_failed"] >= 2


def test_s3_down_during_a_cycle_keeps_the_champion_and_the_stream(batch_env):
    from churn_stream.bench.faults import s3_down_cycle

    result = s3_down_cycle(batch_env, EVENTS)
    check(result, batch_env)
    assert result.detail["error"].startswith(f"S3 unreachable at {batch_env.stack.s3_endpoint_url}")


def test_mlflow_down_during_promotion_keeps_the_champion_and_the_stream(batch_env):
    from churn_stream.bench.faults import mlflow_down_promotion

    result = mlflow_down_promotion(batch_env, EVENTS)
    check(result, batch_env)
    assert result.detail["error"].startswith(f"MLflow unreachable at {batch_env.stack.mlflow_tracking_uri}")
