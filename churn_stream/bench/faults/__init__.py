"""``churn bench faults``: inject faults into a running pipeline and count what was lost.

Each scenario streams at least 10,000 Telco customer events (rows replicated with fresh
event ids) through a real worker on topics and a consumer group of its own, injects one
fault mid-stream, then reads the scenario's ``churn-scores`` and ``customers.dlq`` back
from the beginning and counts:

``produced``
    records the broker acknowledged (the producer retries un-acknowledged ones itself);
``scored``
    distinct event ids on ``churn-scores``;
``lost``
    acknowledged *valid* events without a score (must be 0);
``duplicates``
    scores beyond the first per event id (at-least-once allows them);
``alerts``
    distinct event ids on ``churn-alerts``;
``alert_duplicates``
    alert *emissions* beyond the first per event id, i.e. distinct alert documents (each
    carries its ``scored_at``) for one event (must be 0: the worker emits an alert at most
    once per event, see :mod:`stream_app.alert_ledger`). Byte-identical copies are one
    emission the broker appended twice because a produce was retried after its
    acknowledgement was lost (a broker restart); they are counted in
    ``detail.alert_retry_copies``, and only an idempotent producer removes them (Apache
    Kafka has one; Tansu 0.6.0 refuses ``InitProducerId``). ``detail.alerts_missing``
    counts events scored at or above the threshold without an alert (must be 0);
``dead_lettered``
    distinct input records (partition, offset) on the dead-letter topic;
``recovery_s``
    seconds from the fault's end (the restart of what was stopped or killed, the departure of
    the second worker, the corrupt announcements) to the first score computed after it
    (``scored_at``); start-up of the restarted process is part of it.

Scenarios 1-6 share one stack with a **durable** broker (topics survive a broker restart);
7-8 run on a second stack whose broker is in memory, because a durable Tansu keeps its
topics in the very S3 that scenario 6 stops (in production Kafka does not depend on
MinIO). The worker is restarted only in ``worker_kill``, where killing it is the fault.

The scenario functions are what ``tests/integration/test_faults.py`` (``pytest -m faults``)
runs t

Modules: :mod:`~churn_stream.bench.faults.harness` (the stack, producer and workers of a
scenario), :mod:`~churn_stream.bench.faults.scenarios` (the faults),
:mod:`~churn_stream.bench.faults.accounting` (reading the output topics back, the counts,
the table) and :mod:`~churn_stream.bench.faults.run` (``churn bench faults``).
"""

from churn_stream.bench.faults.accounting import FaultResult, format_table
from churn_stream.bench.faults.harness import FaultEnv, RobustProducer, ScenarioRun, fault_stack, malformed_value
from churn_stream.bench.faults.run import run_bench_faults
from churn_stream.bench.faults.scenarios import (
    BATCH_SCENARIOS,
    MALFORMED_EVERY,
    SCENARIO_FUNCS,
    SCENARIOS,
    STREAM_SCENARIOS,
    broker_restart,
    corrupt_artifact,
    durable_backlog,
    malformed_events,
    mlflow_down_promotion,
    s3_down_cycle,
    worker_join_leave,
    worker_kill,
)

__all__ = [
    "BATCH_SCENARIOS",
    "MALFORMED_EVERY",
    "SCENARIOS",
    "SCENARIO_FUNCS",
    "STREAM_SCENARIOS",
    "FaultEnv",
    "FaultResult",
    "RobustProducer",
    "ScenarioRun",
    "broker_restart",
    "corrupt_artifact",
    "durable_backlog",
    "fault_stack",
    "format_table",
    "malformed_events",
    "malformed_value",
    "mlflow_down_promotion",
    "run_bench_faults",
    "s3_down_cycle",
    "worker_join_leave",
    "worker_kill",
]
