"""The eight fault scenarios of ``churn bench faults``, each a function of a :class:`FaultEnv`.

Scenarios 1-6 share one stack with a **durable** broker (topics survive a broker restart);
7-8 run on a second stack whose broker is in memory, because a durable Tansu keeps its
topics in the very S3 that scenario 6 stops (in production Kafka does not depend on
MinIO). The worker is restarted only in ``worker_kill``, where killing it is the fault.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from churn_stream.bench.faults.accounting import FaultResult
from churn_stream.bench.faults.harness import (
    FAST_ZOO,
    FaultEnv,
    RobustProducer,
    ScenarioRun,
    health,
    stream_scenario,
    wait_until,
)
from plumbing.settings import Settings
from schemas.registry import CHAMPION

logger = logging.getLogger(__name__)

#: Scenario names, in run order; the first five need the durable stack, the last two the batch stack.
STREAM_SCENARIOS = (
    "broker_restart",
    "worker_kill",
    "worker_join_leave",
    "durable_backlog",
    "malformed_events",
    "corrupt_artifact",
)
BATCH_SCENARIOS = ("s3_down_cycle", "mlflow_down_promotion")
SCENARIOS = STREAM_SCENARIOS + BATCH_SCENARIOS

#: Seconds the broker stays down in ``broker_restart``.
BROKER_OUTAGE_S = 30.0

#: One input record in this many is malformed in ``malformed_events``.
MALFORMED_EVERY = 100

#: Longest ``durable_backlog`` waits for the worker to drain its backlog.
DRAIN_TIMEOUT_S = 300.0


def broker_restart(env: FaultEnv, events: int = 10_000, outage_s: float = BROKER_OUTAGE_S) -> FaultResult:
    """1. The (durable) broker is stopped for ``outage_s`` mid-stream and restarted."""

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.3)
        acked_before = producer.n_acked
        t_stop = time.time()
        env.stack.stop_service("kafka")
        logger.info("scenario=broker_restart broker stopped; sleeping %.0f s", outage_s)
        time.sleep(outage_s)
        # Recovery counts from the restart, so the broker's own start-up is part of it.
        fault_end = time.time()
        env.stack.start_service("kafka")
        broker_start_s = time.time() - fault_end
        proc, settings = run.workers[0]
        return {
            "fault_end": fault_end,
            "checks": {"worker_alive": proc.poll() is None},
            "detail": {
                "outage_s": round(fault_end - t_stop, 1),
                "broker_start_s": round(broker_start_s, 2),
                "acked_before_stop": acked_before,
            },
        }

    return stream_scenario(env, "broker_restart", fault, events, rate=300.0)


def worker_kill(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """2. The worker is killed with SIGKILL mid-stream and a new one is started in its place."""

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.3)
        proc, _ = run.workers[0]
        killed_at = producer.n_acked
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fault_end = time.time()
        _, settings = run.start_worker()
        return {
            "fault_end": fault_end,
            "checks": {"replacement_ready": bool(health(settings).get("ready"))},
            "detail": {"killed_pid": proc.pid, "killed_at_acked": killed_at},
        }

    return stream_scenario(env, "worker_kill", fault, events, rate=300.0)


def worker_join_leave(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """3. A second worker joins the group mid-stream (the 4 partitions are shared), then leaves (SIGTERM)."""
    from churn_stream.demo import stop_worker

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.1)
        _, first = run.workers[0]
        second_proc, second = run.start_worker()
        n = run.settings.topic_partitions

        def shared() -> bool:
            a, b = health(first).get("assigned_partitions", 0), health(second).get("assigned_partitions", 0)
            return a > 0 and b > 0 and a + b == n

        was_shared = wait_until(shared, 120)
        split = [health(first).get("assigned_partitions"), health(second).get("assigned_partitions")]
        # Being assigned is not yet scoring: the joiner first reads the alert ledger back
        # for its partitions. Give it the time to score some of the still-flowing stream.
        wait_until(lambda: health(second).get("events_in", 0) > 0, 30)
        second_events = health(second).get("events_in", 0)
        flowing = not producer.done
        stop_worker(second_proc)
        fault_end = time.time()
        took_back = wait_until(lambda: health(first).get("assigned_partitions") == n, 120)
        return {
            "fault_end": fault_end,
            "checks": {
                "partitions_shared": was_shared,
                "second_worker_scored": second_events > 0,
                "first_worker_took_all_back": took_back,
                "second_exited_cleanly": second_proc.returncode == 0,
            },
            "detail": {
                "assignment_while_shared": split,
                "second_worker_events_in": second_events,
                "stream_still_flowing_at_leave": flowing,
            },
        }

    return stream_scenario(env, "worker_join_leave", fault, events, rate=200.0)


def durable_backlog(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """4. A backlog of one-record batches waits on the durable broker; then the worker starts.

    The durable Tansu answers a fetch empty when reading the partition from S3 takes longer
    than the fetch's wait: with the worker's 10 ms a backlog like this one was never read
    (a user's ``churn produce`` on the default stack; ``/health`` "stalled"). The worker must
    drain it on its own (:class:`stream_app.fetch_wait.AdaptiveFetchWait`).
    """

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.join()
        t_start = time.time()
        _, settings = run.start_worker()
        drained = wait_until(lambda: health(settings).get("events_in", 0) >= producer.n_acked, DRAIN_TIMEOUT_S)
        after = health(settings)
        return {
            "fault_end": t_start,
            "checks": {"backlog_drained": drained, "worker_ready_after": bool(after.get("ready"))},
            "detail": {
                "drain_s": round(time.time() - t_start, 1),
                "events_in": after.get("events_in"),
                "fetch_max_wait_ms": after.get("fetch_max_wait_ms"),
            },
        }

    # ~900-byte batches: one Telco event each. Produced as fast as the broker acknowledges.
    return stream_scenario(env, "durable_backlog", fault, events, rate=5000.0, worker_first=False, batch_bytes=900)


def malformed_events(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """5. One record in :data:`MALFORMED_EVERY` is malformed, in ten different ways (see :func:`malformed_value`)."""

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.join()
        _, settings = run.workers[0]
        return {"fault_end": None, "checks": {"worker_ready_after": bool(health(settings).get("ready"))}}

    return stream_scenario(env, "malformed_events", fault, events, rate=1000.0, malformed_every=MALFORMED_EVERY)


def corrupt_artifact(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """6. Two corrupt champions are announced on ``model-updated`` mid-stream.

    One names the real champion's artifact with a wrong SHA-256; the other points at a
    non-npz file uploaded as an artifact of the champion's real run, with its true
    SHA-256. The worker must refuse both, report it, keep its champion and keep scoring.
    """
    from batch.announce import publish_model_updated
    from plumbing.clients import make_tracker

    champion = env.champion

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        producer.wait_acked(0.3)
        _, settings = run.workers[0]
        before = health(settings)
        bad = b"this is not an npz archive\n" * 64
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pipeline.npz"
            path.write_bytes(bad)
            make_tracker(env.settings).log_artifact(champion["run_id"], str(path), artifact_path="corrupt")
        wrong_sha = dict(champion, alias=CHAMPION, model_version="9001", sha256="0" * 64)
        not_npz = dict(
            champion,
            alias=CHAMPION,
            model_version="9002",
            artifact_uri=f"runs:/{champion['run_id']}/corrupt/pipeline.npz",
            sha256=hashlib.sha256(bad).hexdigest(),
        )
        publish_model_updated(env.settings, wrong_sha)
        publish_model_updated(env.settings, not_npz)
        fault_end = time.time()
        reported = wait_until(
            lambda: health(settings).get("reloads_failed", 0) >= before.get("reloads_failed", 0) + 2, 120
        )
        producer.join()
        after = health(settings)
        return {
            "fault_end": fault_end,
            "checks": {
                "champion_unchanged": after.get("model_version") == champion["model_version"],
                "failure_reported": reported,
            },
            "detail": {
                "model_version": after.get("model_version"),
                "reloads_failed": after.get("reloads_failed"),
                "reloads_ok": after.get("reloads_ok"),
            },
        }

    return stream_scenario(env, "corrupt_artifact", fault, events, rate=400.0)


@contextlib.contextmanager
def _mlflow_fails_fast() -> Iterator[None]:
    # MLflow's client retries a dead server for minutes by default and reads these from the
    # process environment only; the outage must surface as an error within seconds.
    saved = {k: os.environ.get(k) for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")}
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _StopS3OnFirstTrainedModel(logging.Handler):
    """Stops S3 once the cycle logs its first trained model (mid-training: artifacts still to upload)."""

    def __init__(self, stack) -> None:
        super().__init__(logging.INFO)
        self.stack, self.stopped = stack, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.stopped and record.getMessage().startswith("trained model="):
            self.stopped = True
            self.stack.stop_service("s3")


class _StopMlflowOnAliasMove:
    """An MLflow client that stops the tracking server just before the first alias moves (promotion)."""

    def __init__(self, tracker, stack) -> None:
        self._tracker, self._stack, self.stopped = tracker, stack, False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tracker, name)
        if name != "set_registered_model_alias" or self.stopped:
            return attr

        def move_alias(*args: Any, **kwargs: Any) -> Any:
            self.stopped = True
            self._stack.stop_service("mlflow")
            return attr(*args, **kwargs)

        return move_alias


def _champion_version(settings: Settings) -> str | None:
    from batch.promotion import CLASSIFIER_NAME, current_champion
    from plumbing.clients import make_tracker

    champ = current_champion(make_tracker(settings), CLASSIFIER_NAME)
    return None if champ is None else str(champ.version)


def _batch_fault(
    env: FaultEnv, service: str, expected_stage: str
) -> Callable[[ScenarioRun, RobustProducer], dict[str, Any]]:
    """The fault of scenarios 6 and 7: a cycle with ``service`` going down, then a restart and a good cycle."""
    from batch.cycle import CycleError, run_cycle
    from plumbing.clients import make_storage, make_tracker

    def fault(run: ScenarioRun, producer: RobustProducer) -> dict[str, Any]:
        settings = env.settings
        before = _champion_version(settings)
        producer.wait_acked(0.1)
        storage, tracker = make_storage(settings), make_tracker(settings)
        handler = None
        if service == "S3":
            handler = _StopS3OnFirstTrainedModel(env.stack)
            training_log = logging.getLogger("batch.training")
            training_log.addHandler(handler)
            training_log.setLevel(logging.INFO)
            cycle_tracker: Any = tracker
        else:
            cycle_tracker = _StopMlflowOnAliasMove(tracker, env.stack)
        error: CycleError | None = None
        t0 = time.monotonic()
        with _mlflow_fails_fast():
            try:
                run_cycle(settings, storage, cycle_tracker, only=FAST_ZOO, margin=-1.0)
            except CycleError as exc:
                error = exc
            finally:
                if handler is not None:
                    logging.getLogger("batch.training").removeHandler(handler)
        failed_after_s = time.monotonic() - t0
        fault_end = time.time()
        env.stack.start_service("s3" if service == "S3" else "mlflow")
        unchanged = _champion_version(settings) == before
        nxt = run_cycle(settings, storage, tracker, only=FAST_ZOO, margin=-1.0)
        after = _champion_version(settings)
        _, wsettings = run.workers[0]
        swapped = wait_until(lambda: health(wsettings).get("model_version") == after, 60)
        producer.join()
        return {
            "fault_end": fault_end,
            "checks": {
                "cycle_failed_with_cycle_error": error is not None and error.service == service,
                f"failed_during_{expected_stage}": error is not None and error.stage == expected_stage,
                "champion_unchanged_after_failure": unchanged,
                "next_cycle_promoted": after == nxt.registered.get("model_version") != before,
                "worker_swapped_to_next_champion": swapped,
            },
            "detail": {
                "error": str(error)[:200] if error else None,
                "failed_after_s": round(failed_after_s, 1),
                "champion_before": before,
                "champion_after_next_cycle": after,
            },
        }

    return fault


def s3_down_cycle(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """7. S3 stops during a batch cycle's training while the stream flows; then the next cycle succeeds."""
    return stream_scenario(env, "s3_down_cycle", _batch_fault(env, "S3", "train_classification"), events, rate=200.0)


def mlflow_down_promotion(env: FaultEnv, events: int = 10_000) -> FaultResult:
    """8. MLflow stops as the cycle moves the champion alias, while the stream flows; then the next cycle succeeds."""
    return stream_scenario(env, "mlflow_down_promotion", _batch_fault(env, "MLflow", "promote"), events, rate=200.0)


SCENARIO_FUNCS: dict[str, Callable[..., FaultResult]] = {
    "broker_restart": broker_restart,
    "worker_kill": worker_kill,
    "worker_join_leave": worker_join_leave,
    "durable_backlog": durable_backlog,
    "malformed_events": malformed_events,
    "corrupt_artifact": corrupt_artifact,
    "s3_down_cycle": s3_down_cycle,
    "mlflow_down_promotion": mlflow_down_promotion,
}
