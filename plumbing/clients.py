"""Clients built from :class:`~plumbing.settings.Settings`: S3 (MinIO client), MLflow, Kafka.

Entry points build these once and pass them down; jobs never build their own.
The same code talks to the local stack (SeaweedFS, Tansu) and to production
(MinIO, Apache Kafka): only the settings differ.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from plumbing.settings import Settings
from schemas.namespace import Namespace
from schemas.profiles import DatasetProfile, ProfileError, get_profile

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

logger = logging.getLogger(__name__)

#: Buckets the system uses (created on demand).
BUCKETS = ("raw-data", "processed-data", "models")


def make_storage(settings: Settings):
    """An S3 client (``minio.Minio``) for the configured endpoint.

    Returns
    -------
    minio.Minio
    """
    from minio import Minio

    return Minio(
        settings.minio_endpoint,
        access_key=settings.minio_access_key,
        secret_key=settings.minio_secret_key,
        secure=settings.minio_secure,
    )


def ensure_buckets(storage, names: tuple[str, ...] = BUCKETS) -> None:
    """Create missing buckets (idempotent)."""
    for name in names:
        if not storage.bucket_exists(name):
            storage.make_bucket(name)


def make_tracker(settings: Settings):
    """An ``mlflow.MlflowClient`` for the configured tracking server.

    Artifacts go through the tracking server's artifact proxy, so clients need no
    direct S3 credentials for MLflow.
    """
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


#: Values of ``KAFKA_SECURITY_PROTOCOL`` that aiokafka understands.
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of the system connects: the one reading of the ``KAFKA_*`` security settings.

    Built by :func:`kafka_security`; :func:`kafka_kwargs` (aiokafka) and
    :func:`faust_credentials` (the worker's Faust app) both translate it, so the two
    cannot drift apart.

    Attributes
    ----------
    protocol : str
        One of :data:`KAFKA_SECURITY_PROTOCOLS`, upper-cased.
    ssl_context : ssl.SSLContext or None
        For ``SSL`` and ``SASL_SSL``: trusts ``KAFKA_SSL_CAFILE``, or the system store when empty.
    sasl_mechanism : str or None
        For ``SASL_*``: ``KAFKA_SASL_MECHANISM`` upper-cased (``SCRAM-SHA-512``), ``PLAIN`` when empty.
    sasl_username, sasl_password : str
        For ``SASL_*``. The password is left out of the repr: never log it anyway.
    """

    protocol: str = "PLAINTEXT"
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)


def _security_protocol(settings: Settings) -> str:
    protocol = settings.kafka_security_protocol.strip().upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ValueError(
            f"KAFKA_SECURITY_PROTOCOL: expected one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
            f"got {settings.kafka_security_protocol!r}"
        )
    return protocol


def kafka_security(settings: Settings) -> KafkaSecurity:
    """Validate the Kafka security settings and build the SSL context they ask for.

    Parameters
    ----------
    settings : Settings
        ``kafka_security_protocol``, ``kafka_ssl_cafile``, ``kafka_sasl_mechanism``,
        ``kafka_sasl_username`` and ``kafka_sasl_password``.

    Returns
    -------
    KafkaSecurity

    Raises
    ------
    ValueError
        If ``KAFKA_SECURITY_PROTOCOL`` is not one of :data:`KAFKA_SECURITY_PROTOCOLS`.
    """
    protocol = _security_protocol(settings)
    if protocol == "PLAINTEXT":
        return KafkaSecurity()
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        ssl_context = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if not protocol.startswith("SASL_"):
        return KafkaSecurity(protocol, ssl_context)
    return KafkaSecurity(
        protocol,
        ssl_context,
        sasl_mechanism=settings.kafka_sasl_mechanism.strip().upper() or "PLAIN",
        sasl_username=settings.kafka_sasl_username,
        sasl_password=settings.kafka_sasl_password,
    )


def kafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection keyword arguments shared by every aiokafka client.

    With ``KAFKA_SECURITY_PROTOCOL=PLAINTEXT`` (the default) only ``bootstrap_servers``;
    otherwise also ``security_protocol``, an ``ssl_context`` trusting ``KAFKA_SSL_CAFILE``
    (or the system store) for ``SSL``/``SASL_SSL``, and the SASL mechanism and
    credentials for ``SASL_*`` (see :func:`kafka_security`). The result holds the SASL
    password: never log it.

    Raises
    ------
    ValueError
        If ``KAFKA_SECURITY_PROTOCOL`` is not one of :data:`KAFKA_SECURITY_PROTOCOLS`.
    """
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers}
    security = kafka_security(settings)
    if security.protocol == "PLAINTEXT":
        return kwargs
    kwargs["security_protocol"] = security.protocol
    if security.ssl_context is not None:
        kwargs["ssl_context"] = security.ssl_context
    if security.sasl_mechanism is not None:
        # aiokafka takes SCRAM credentials through the same sasl_plain_* arguments.
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        kwargs["sasl_plain_username"] = security.sasl_username
        kwargs["sasl_plain_password"] = security.sasl_password
    return kwargs


def rdkafka_config(settings: Settings) -> dict[str, Any]:
    """Connection properties shared by every librdkafka (``confluent_kafka``) client.

    The same reading of the ``KAFKA_*`` security settings as :func:`kafka_security`, in
    librdkafka's property names: ``bootstrap.servers``, and for other protocols
    ``security.protocol``, ``ssl.ca.location`` (``KAFKA_SSL_CAFILE``; librdkafka's default
    store otherwise), ``sasl.mechanism`` (``PLAIN`` when empty), ``sasl.username`` and
    ``sasl.password``. The result holds the SASL password: never log it.

    Parameters
    ----------
    settings : Settings

    Returns
    -------
    dict of str to str
        librdkafka configuration properties
        (https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md).

    Raises
    ------
    ValueError
        If ``KAFKA_SECURITY_PROTOCOL`` is not one of :data:`KAFKA_SECURITY_PROTOCOLS`.
    """
    protocol = _security_protocol(settings)  # librdkafka reads the CA file itself: no SSL context here
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    if protocol == "PLAINTEXT":
        return config
    config["security.protocol"] = protocol
    if protocol in ("SSL", "SASL_SSL") and settings.kafka_ssl_cafile:
        config["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    if protocol.startswith("SASL_"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism.strip().upper() or "PLAIN"
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password
    return config


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the same settings as :func:`kafka_kwargs`.

    Parameters
    ----------
    settings : Settings

    Returns
    -------
    faust.SSLCredentials or faust.SASLCredentials or None
        ``None`` for ``PLAINTEXT``. SASL credentials hold the password: never log them.

    Raises
    ------
    ValueError
        If ``KAFKA_SECURITY_PROTOCOL`` is not one of :data:`KAFKA_SECURITY_PROTOCOLS`.
    """
    security = kafka_security(settings)
    if security.protocol == "PLAINTEXT":
        return None
    import faust  # only the worker needs it, and it is slow to import

    if security.sasl_mechanism is None:
        return faust.SSLCredentials(security.ssl_context)
    return faust.SASLCredentials(
        username=security.sasl_username,
        password=security.sasl_password,
        mechanism=security.sasl_mechanism,
        ssl_context=security.ssl_context,
    )


class DatasetError(ValueError):
    """``--dataset`` / ``CHURN_DATASET`` names no shipped profile and no valid profile file."""


def served_dataset(settings: Settings, dataset: str | None = None) -> tuple[DatasetProfile, Namespace]:
    """The profile a process serves and its namespace (topics, registered models, consumer group).

    Parameters
    ----------
    settings : Settings
        ``dataset`` (``CHURN_DATASET``) and ``consumer_group`` (the namespace's base group).
    dataset : str, optional
        A shipped profile's name or a profile file (``--dataset``); default ``settings.dataset``.

    Returns
    -------
    profile : DatasetProfile
    namespace : Namespace

    Raises
    ------
    DatasetError
        One line: an unknown name, a missing file or a profile that does not validate.
    """
    profile = load_dataset(dataset if dataset is not None else settings.dataset)
    return profile, Namespace.for_dataset(profile.name, settings.consumer_group)


def load_dataset(name_or_path: str) -> DatasetProfile:
    """The profile of a shipped dataset name or a profile file.

    Parameters
    ----------
    name_or_path : str
        ``telco``, ``retail``, ... or a path to a profile file (YAML or JSON).

    Returns
    -------
    DatasetProfile

    Raises
    ------
    DatasetError
        One line: an unknown name, a missing file or a profile that does not validate.
    """
    try:
        return get_profile(name_or_path)
    except KeyError as exc:
        raise DatasetError(str(exc.args[0]) if exc.args else f"unknown dataset {name_or_path!r}") from None
    except ProfileError as exc:
        lines = str(exc).splitlines()
        more = f" (and {len(lines) - 1} more problem(s))" if len(lines) > 1 else ""
        raise DatasetError(f"invalid profile {lines[0]}{more}") from None


#: Partitions per topic when this code creates them.
def topic_partitions(settings: Settings, namespace: Namespace | None = None) -> dict[str, int]:
    """Partition count per topic of ``namespace`` (default: Telco's): ``customers`` and its outputs
    are spread, control topics are not."""
    ns = namespace or Namespace.for_dataset()
    n = settings.topic_partitions
    return {
        ns.customers: n,
        ns.scores: n,
        ns.alerts: n,
        ns.model_updated: 1,
        ns.customers_dlq: 1,
        ns.drift: 1,
    }


async def create_missing_topics(settings: Settings, partitions: Mapping[str, int]) -> list[str]:
    """Create each topic of ``partitions`` that does not exist yet (replication factor 1).

    Parameters
    ----------
    settings : Settings
    partitions : mapping of str to int
        Topic name to its partition count.

    Returns
    -------
    list of str
        The topics created (empty when all existed).
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [NewTopic(name, n, 1) for name, n in partitions.items() if name not in existing]
        if wanted:
            await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def ensure_topics_async(settings: Settings, namespace: Namespace | None = None) -> None:
    """Create the topics of ``namespace`` (default: Telco's) if missing (idempotent)."""
    created = await create_missing_topics(settings, topic_partitions(settings, namespace))
    if created:
        logger.info("created topics %s", ",".join(created))


def ensure_topics(settings: Settings, namespace: Namespace | None = None) -> None:
    """Blocking wrapper of :func:`ensure_topics_async`."""
    asyncio.run(ensure_topics_async(settings, namespace))


async def _produce(
    settings: Settings,
    topic: str,
    records: Sequence[tuple[bytes | None, Any]],
    rate: float | None,
    on_acked: Callable[[int], None] | None = None,
    *,
    stamp_event_time: bool = False,
) -> int:
    """Send ``records`` paced at ``rate``; values are bytes, or documents stamped and encoded as sent."""
    from datetime import UTC, datetime

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_kwargs(settings), acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        start = time.perf_counter()
        futures = []
        dumps = orjson.dumps
        for i, (key, value) in enumerate(records):
            if rate:
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if stamp_event_time:
                # Stamped as the record is handed to the producer: the time of the event, not of the file's reading.
                value["event_time"] = datetime.now(UTC).isoformat()
                value = dumps(value)
            futures.append(await producer.send(topic, value, key=key))
            if on_acked is not None:
                futures[-1].add_done_callback(lambda f: f.cancelled() or f.exception() or on_acked(1))
        await producer.flush()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(records)


def produce_records(
    settings: Settings,
    topic: str,
    records: list[tuple[bytes | None, bytes]],
    rate: float | None = None,
    on_acked: Callable[[int], None] | None = None,
) -> int:
    """Send ``(key, value)`` byte pairs to ``topic``; return once every one is acknowledged.

    Parameters
    ----------
    rate : float, optional
        Events per second; ``None`` sends as fast as the broker takes them.
    on_acked : callable, optional
        Called with 1 as each record is acknowledged (a progress bar's ``update``).

    Returns
    -------
    int
        Records acknowledged by the broker.
    """
    return asyncio.run(_produce(settings, topic, records, rate, on_acked))


def produce_events(
    settings: Settings,
    topic: str,
    events: list[tuple[bytes, dict[str, Any]]],
    rate: float | None = None,
    on_acked: Callable[[int], None] | None = None,
) -> int:
    """Send event documents to ``topic``, each stamped with ``event_time`` = now (UTC) as it is sent.

    Parameters
    ----------
    settings : Settings
    topic : str
    events : list of (bytes, dict)
        Key and JSON-able document; its ``event_time`` is overwritten.
    rate : float, optional
        Events per second; ``None`` sends as fast as the broker takes them.
    on_acked : callable, optional
        Called with 1 as each record is acknowledged (a progress bar's ``update``).

    Returns
    -------
    int
        Records acknowledged by the broker.
    """
    return asyncio.run(_produce(settings, topic, list(events), rate, on_acked, stamp_event_time=True))


def decode_record(value: bytes | None) -> Any:
    """A record value as JSON when it parses, else ``{"value_b64": ...}``."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return {"value_b64": base64.b64encode(value).decode()}


def consume_topic(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    idle_timeout_s: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield records of ``topic`` as dicts (``topic``, ``partition``, ``offset``, ``key``, ``value``).

    Reads without a consumer group (nothing is committed). Stops after ``limit``
    records or ``idle_timeout_s`` seconds without a new record; runs until
    interrupted otherwise.
    """
    from aiokafka import AIOKafkaConsumer

    async def make() -> AIOKafkaConsumer:
        # aiokafka binds a consumer to the running loop: create it inside the loop.
        consumer = AIOKafkaConsumer(
            topic,
            **kafka_kwargs(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
        )
        await consumer.start()
        return consumer

    loop = asyncio.new_event_loop()
    consumer = loop.run_until_complete(make())
    try:
        n = 0
        last = time.monotonic()
        while limit is None or n < limit:
            batch = loop.run_until_complete(consumer.getmany(timeout_ms=200, max_records=1000))
            records = [m for msgs in batch.values() for m in msgs]
            if records:
                last = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - last > idle_timeout_s:
                return
            for m in records:
                yield {
                    "topic": m.topic,
                    "partition": m.partition,
                    "offset": m.offset,
                    "key": m.key.decode(errors="replace") if m.key is not None else None,
                    "value": decode_record(m.value),
                }
                n += 1
                if limit is not None and n >= limit:
                    return
    finally:
        loop.run_until_complete(consumer.stop())
        loop.close()
