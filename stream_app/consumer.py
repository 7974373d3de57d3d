"""The scoring consumer group's consumer (librdkafka): its settings and its lag.

The worker reads ``customers`` with its own ``confluent_kafka.Consumer`` in the scoring
consumer group (Faust's consumer only serves the app); :func:`scoring_consumer_config`
configures it and :func:`consumer_lag` reads how far it is behind, for ``/health`` and
``/metrics``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioTopicPartition
from confluent_kafka import TopicPartition

from plumbing.clients import rdkafka_config
from plumbing.settings import Settings
from stream_app.fetch_wait import FETCH_MAX_WAIT_MS

#: Where librdkafka's own log lines go (instead of stderr).
RDKAFKA_LOGGER = logging.getLogger("librdkafka")
#: Micro-batch bound: at most this many events per ``consume``; otherwise whatever is buffered.
MAX_BATCH = 500
#: librdkafka's ``max.poll.interval.ms``. librdkafka also sends it as the JoinGroup rebalance
#: timeout, and Tansu completes a join only after the rebalance timeout: a short one keeps
#: start-up and failover quick. The hot loop polls every few milliseconds; the longest it
#: stays away is a revocation's bounded drain (:data:`stream_app.loop.REVOKE_DRAIN_TIMEOUT_S`).
MAX_POLL_INTERVAL_MS = 6000


def scoring_consumer_config(
    settings: Settings, group_id: str | None = None, fetch_wait_ms: int = FETCH_MAX_WAIT_MS
) -> dict[str, Any]:
    """librdkafka properties of the scoring group's consumer (holds credentials: never log it).

    Offsets are committed by the worker only (``enable.auto.commit`` off), after the
    outputs of every record up to them are acknowledged; a partition without a commit
    starts at its beginning.

    Parameters
    ----------
    settings : Settings
        Connection (:func:`plumbing.clients.rdkafka_config`) and ``consumer_group``.
    group_id : str, optional
        The data set's consumer group (:attr:`schemas.namespace.Namespace.consumer_group`);
        default ``settings.consumer_group``.
    fetch_wait_ms : int, default FETCH_MAX_WAIT_MS
        ``fetch.wait.max.ms``: longest the broker holds a fetch with nothing new
        (see :mod:`stream_app.fetch_wait`).

    Returns
    -------
    dict of str to object
    """
    return {
        **rdkafka_config(settings),
        "group.id": group_id or settings.consumer_group,
        "client.id": "churn-worker",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": int(fetch_wait_ms),
        # Fetched ahead and held in librdkafka's queue: a few micro-batches, not the default
        # 64 MiB and 100,000 records (the worker's resident memory, ``churn bench stream``).
        "max.partition.fetch.bytes": 1024 * 1024,
        "queued.max.messages.kbytes": 4 * 1024,
        "queued.min.messages": 5 * MAX_BATCH,
        # When the queue is full, fetch again as soon as the loop took a batch (the default
        # waits a whole second: 8k instead of 16k events/s under load).
        "fetch.queue.backoff.ms": 2,
        "session.timeout.ms": MAX_POLL_INTERVAL_MS,  # librdkafka requires it to be <= max.poll.interval.ms
        "heartbeat.interval.ms": 1000,
        "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        # One assignor, aiokafka's default: Tansu refuses a member whose protocol list differs
        # from the group's (InconsistentGroupProtocol with librdkafka's "range,roundrobin").
        "partition.assignment.strategy": "roundrobin",
        "logger": RDKAFKA_LOGGER,
    }


async def consumer_lag(
    consumer: Any, reader: AIOKafkaConsumer, assigned: list[tuple[str, int]], committed: dict
) -> dict[tuple[str, int], int]:
    """Per assigned partition: end offset minus the last committed offset (one ListOffsets request).

    The end offset is the larger of ListOffsets' answer (asked through ``reader``, so a
    broker that does not answer raises instead of blocking the hot loop) and the high
    watermark of the scoring consumer's last fetch from that partition (Tansu's ListOffsets
    "latest" can answer short of the newest record batch, the fetch path does not).

    Parameters
    ----------
    consumer : confluent_kafka.Consumer
        The scoring consumer; only its cached watermarks are read (no request).
    reader : aiokafka.AIOKafkaConsumer
        Started, group-less.
    assigned : list of (str, int)
        The scoring consumer's assignment.
    committed : dict of (str, int) to int
        This worker's own commits and the group's commits read at assignment
        (:attr:`stream_app.loop.WorkerStats.committed`); partitions no longer assigned
        are dropped from it. A partition missing from it counts from its beginning.

    Returns
    -------
    dict of (str, int) to int
        Records behind per ``(topic, partition)``.
    """
    for tp in set(committed) - set(assigned):
        del committed[tp]
    if not assigned:
        return {}
    tps = [AioTopicPartition(t, p) for t, p in assigned]
    ends = await reader.end_offsets(tps)
    unknown = [tp for tp in tps if (tp.topic, tp.partition) not in committed]
    starts = await reader.beginning_offsets(unknown) if unknown else {}
    lag = {}
    for tp in tps:
        key = (tp.topic, tp.partition)
        end = ends[tp]
        _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
        if high is not None and high > end:
            end = high
        start = committed.get(key, starts.get(tp, 0))
        lag[key] = max(0, end - start)
    return lag
