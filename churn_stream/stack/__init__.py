"""The local stack: SeaweedFS (S3 API), Tansu (Kafka protocol) and MLflow, as real servers.

Every service is a plain child process started with ``start_new_session=True`` so it
outlives the ``churn`` command that launched it and ignores a Ctrl-C in that terminal.
Everything lives under one data directory (``.churn/`` by default)::

    <data_dir>/s3/                 SeaweedFS data (buckets, objects, Tansu's topics when durable)
    <data_dir>/mlflow/mlflow.db    MLflow backend store (artifacts go to s3://mlflow/artifacts)
    <data_dir>/logs/<service>.log  one log per service, appended across restarts
    <data_dir>/run/<service>.pid   pid of the process this stack started
    <data_dir>/run/kafka.mode      last mode the broker was started in: durable | ephemeral

Services, in start order: ``s3``, ``kafka`` (needs S3 when durable) and ``mlflow``
(needs S3 for artifacts).

Secure stack (``up`` of a ``LocalStack(..., secure=True)``, ``churn stack up --secure``):
``s3`` with random keys and JWT-signed internal ports, ``kafka`` on a loopback-only backend
port, ``kafka-gateway`` (TLS + SASL/SCRAM-SHA-512 on the public Kafka port, in front of
it) and ``mlflow`` with basic-auth and one least-privilege user per service. Its
credentials live in ``<data_dir>/secrets/`` and the clients' settings in
``<data_dir>/stack.env`` (batch user) and ``stack-<client>.env``, all mode 600
(:mod:`~churn_stream.stack.credentials`). ``docs/security.md`` has the threat model.

Broker mode: ``up(ephemeral=True)`` runs Tansu with ``memory://`` storage (topics vanish
on restart), the default runs it on ``s3://tansu/`` (topics survive a restart). If the
broker is already running in the other mode, :meth:`LocalStack.up` raises
:class:`StackError` instead of silently restarting it (other processes may be using the
topics); ``churn stack down`` (or :meth:`LocalStack.stop_service` ``("kafka")``) first.
:meth:`LocalStack.start_service` ``("kafka")`` without a mode restarts the broker in the
mode it last ran in.

Modules: :mod:`~churn_stream.stack.service` (the lifecycle every service shares: pid and
log files, start, health wait, stop), one module per server
(:mod:`~churn_stream.stack.seaweedfs`, :mod:`~churn_stream.stack.tansu`,
:mod:`~churn_stream.stack.mlflow_server`, :mod:`~churn_stream.stack.gateway_service` with
the gateway itself in :mod:`~churn_stream.stack.kafka_gateway`),
:mod:`~churn_stream.stack.kafka_probe` (the broker's health check),
:mod:`~churn_stream.stack.credentials`, :mod:`~churn_stream.stack.ports` and
:mod:`~churn_stream.stack.local` (:class:`LocalStack`, which composes the three).
"""

from churn_stream.stack.errors import StackError
from churn_stream.stack.local import SECURE_SERVICES, SERVICES, LocalStack
from churn_stream.stack.ports import GRPC_OFFSET, WEED_PORT_NAMES, derive_weed_ports, free_ports, port_in_use
from churn_stream.stack.seaweedfs import BUCKETS
from churn_stream.stack.service import STOP_GRACE_S, Service, ServiceStatus, StackConfig

__all__ = [
    "BUCKETS",
    "GRPC_OFFSET",
    "SECURE_SERVICES",
    "SERVICES",
    "STOP_GRACE_S",
    "WEED_PORT_NAMES",
    "LocalStack",
    "Service",
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "derive_weed_ports",
    "free_ports",
    "port_in_use",
]
