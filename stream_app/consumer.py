"""The scoring consumer group's consumer: its settings and its lag.

The worker reads ``customers`` with its own aiokafka consumer in the scoring
consumer group (Faust's consumer only serves the app); :func:`scoring_consumer_kwargs`
configures it and :func:`consumer_lag` reads how far it is behind, for ``/health``
and ``/metrics``.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

from plumbing.clients import kafka_kwargs
from plumbing.settings import Settings
from stream_app.fetch_wait import FETCH_MAX_WAIT_MS

#: Micro-batch bound: at most this many events; otherwise whatever the fetcher holds.
MAX_BATCH = 2000


def scoring_consumer_kwargs(settings: Settings, group_id: str | None = None) -> dict[str, Any]:
    """Keyword arguments of the scoring group's ``AIOKafkaConsumer`` (holds credentials: never log it).

    Parameters
    ----------
    settings : Settings
        Connection (:func:`plumbing.clients.kafka_kwargs`) and ``consumer_group``.
    group_id : str, optional
        The data set's consumer group (:attr:`schemas.namespace.Namespace.consumer_group`);
        default ``settings.consumer_group``.

    Returns
    -------
    dict of str to object
    """
    return dict(
        **kafka_kwargs(settings),
        group_id=group_id or settings.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=MAX_BATCH,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        # Tansu completes a join only after the rebalance timeout; a short one keeps
        # start-up and failover quick while still far above a micro-batch's duration.
        rebalance_timeout_ms=5000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )


async def consumer_lag(consumer: AIOKafkaConsumer, committed: dict) -> dict[tuple[str, int], int]:
    """Per assigned partition: end offset minus the last committed offset (one ListOffsets request).

    The end offset is the larger of ListOffsets' answer and the high watermark of the
    consumer's last fetch from that partition.

    Parameters
    ----------
    consumer : aiokafka.AIOKafkaConsumer
        The scoring consumer, started.
    committed : dict of aiokafka.TopicPartition to int
        This worker's own commits (:attr:`stream_app.loop.WorkerStats.committed`), updated
        in place: a partition it has not committed yet asks the group coordinator, one
        never committed counts from its beginning, and partitions no longer assigned are
        dropped.

    Returns
    -------
    dict of (str, int) to int
        Records behind per ``(topic, partition)``.
    """
    tps = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
    for tp in set(committed) - set(tps):
        # Moved to another worker: if it comes back, its commits since then are the coordinator's.
        del committed[tp]
    if not tps:
        return {}
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        # The high watermark of the last fetch response: Tansu's ListOffsets "latest" can
        # answer short of the newest record batch, the fetch path does not.
        hw = consumer.highwater(tp)
        if hw is not None and hw > ends[tp]:
            ends[tp] = hw
    unknown = [tp for tp in tps if tp not in committed]
    if unknown:
        starts = await consumer.beginning_offsets(unknown)
        for tp in unknown:
            c = await consumer.committed(tp)
            committed[tp] = c if c is not None else starts[tp]
    return {(tp.topic, tp.partition): max(0, ends[tp] - committed[tp]) for tp in tps}
