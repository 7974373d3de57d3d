"""Live figures from Kafka: ONE background consumer thread feeding :class:`~dashboard.buffers.LiveBuffers`.

:class:`LiveFeed` runs aiokafka in its own event loop in a daemon thread. It reads
``churn-scores`` and ``churn-alerts`` from their end without a consumer group (nothing
is committed: the dashboard is read-only) and every few seconds samples the scoring
workers' consumer lag on ``customers``. Dash callbacks never talk to Kafka: they take
snapshots of the buffers. The topics and the consumer group are those of the served data
set's namespace (``CHURN_DATASET``; :class:`schemas.namespace.Namespace`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from dashboard.buffers import LiveBuffers, LiveSnapshot, format_reasons, latency_ms
from plumbing.clients import served_dataset
from schemas.namespace import Namespace

__all__ = ["LiveBuffers", "LiveFeed", "LiveSnapshot", "format_reasons", "latency_ms", "served_end_offsets"]

logger = logging.getLogger(__name__)

#: Seconds before asking again for committed offsets after the broker failed to answer.
LAG_RETRY_S = 30.0
#: Longest one lag sample may take before the feed reconnects (see :meth:`LiveFeed._lag_loop`).
LAG_SAMPLE_TIMEOUT_S = 10.0


async def served_end_offsets(reader, tps: Sequence[Any]) -> dict[Any, int]:
    """The offset after each partition's last record: the larger of ListOffsets and the fetched high watermark.

    ListOffsets "latest" is not enough on Tansu 0.6.0: it answers the base offset of the
    partition's last record *batch* plus one, short of the rest of that batch. A fetch
    response's high watermark is right, so this seeks ``reader`` to the listed end,
    fetches once (at most the rest of that batch comes back, and is dropped) and takes the
    larger of the two. The scoring worker measures its lag the same way.

    Parameters
    ----------
    reader : aiokafka.AIOKafkaConsumer
        Started, without a group, used for nothing else: its assignment becomes ``tps``.
    tps : sequence of aiokafka.TopicPartition

    Returns
    -------
    dict of TopicPartition to int
    """
    tps = list(tps)
    if not tps:
        return {}
    listed = await reader.end_offsets(tps)
    if set(reader.assignment()) != set(tps):
        reader.assign(tps)
    for tp in tps:
        reader.seek(tp, listed[tp])
    # One fetch round updates every partition's high watermark, empty answers included.
    await reader.getmany(*tps, timeout_ms=300, max_records=1)
    while any(reader.highwater(tp) is None for tp in tps):
        await reader.getmany(*tps, timeout_ms=200, max_records=1)
    return {tp: max(listed[tp], reader.highwater(tp)) for tp in tps}


class LiveFeed:
    """The dashboard's one Kafka consumer: aiokafka in its own event loop in a daemon thread.

    Parameters
    ----------
    settings : plumbing.settings.Settings
        ``kafka_bootstrap_servers``, ``dataset`` and ``consumer_group`` (the namespace whose
        scores, alerts and scoring group's lag are shown) and ``topic_suffix`` (when the
        worker's topics carry one).
    buffers : LiveBuffers, optional
    lag_interval_s : float, default 2.0
        Seconds between consumer-lag samples.
    kafka_options : dict, optional
        Connection keyword arguments for the aiokafka clients (security protocol, SSL
        context, SASL credentials), built by the entry point; default: only
        ``bootstrap_servers``. Never logged: it may hold a password.
    namespace : Namespace, optional
        The data set's topics and consumer group; default the namespace of ``settings.dataset``.
    """

    def __init__(
        self,
        settings,
        buffers: LiveBuffers | None = None,
        *,
        lag_interval_s: float = 2.0,
        kafka_options: dict[str, Any] | None = None,
        namespace: Namespace | None = None,
    ) -> None:
        self.settings = settings
        self._kafka_options = dict(kafka_options or {"bootstrap_servers": settings.kafka_bootstrap_servers})
        self.buffers = buffers or LiveBuffers()
        self.lag_interval_s = lag_interval_s
        ns = namespace or served_dataset(settings)[1]
        suffix = getattr(settings, "topic_suffix", "") or ""
        self.topics = (ns.scores + suffix, ns.alerts + suffix)
        self.customers_topic = ns.customers + suffix
        self.consumer_group = ns.consumer_group
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lag_retry_at = 0.0

    def start(self) -> LiveFeed:
        """Start the consumer thread (once); return self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dashboard-kafka-feed", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        """Whether the consumer thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                await self._consume()
                backoff = 1.0
            except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - keep the page up and retry
                # Nothing cancels this loop but its own stop flag: a CancelledError here comes
                # from aiokafka's tasks as a lost broker is torn down, and ended the thread for good.
                msg = f"{type(exc).__name__}: {exc}"[:200]
                logger.warning("dashboard feed error=%s retry_s=%.0f", msg, backoff)
                self.buffers.set_status(f"Kafka unavailable ({msg}); retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    async def _consume(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        consumer = AIOKafkaConsumer(
            *self.topics, **self._kafka_options, group_id=None, enable_auto_commit=False, auto_offset_reset="latest"
        )
        admin = AIOKafkaAdminClient(**self._kafka_options)
        # Reads only high watermarks of ``customers`` (see served_end_offsets): short fetch waits, small fetches.
        end_reader = AIOKafkaConsumer(
            **self._kafka_options,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=64 * 1024,
        )
        lag_task: asyncio.Task | None = None
        try:
            await consumer.start()
            await admin.start()
            await end_reader.start()
            self.buffers.set_status("connected")
            logger.info("dashboard feed connected topics=%s", ",".join(self.topics))
            # Lag sampling waits on the broker (up to 5 s for committed offsets): its own
            # task, so the records keep flowing into the buffers meanwhile.
            lag_task = asyncio.create_task(self._lag_loop(end_reader, admin))
            while not self._stop.is_set():
                if lag_task.done():
                    lag_task.result()  # an error ends this connection: reconnect with backoff
                batch = await consumer.getmany(timeout_ms=300, max_records=5000)
                for messages in batch.values():
                    for m in messages:
                        self.buffers.add_record(
                            m.topic, m.value, timestamp_ms=m.timestamp, alert=m.topic == self.topics[1]
                        )
        finally:
            if lag_task is not None:
                lag_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lag_task
            with contextlib.suppress(asyncio.CancelledError, Exception):  # a lost broker's teardown may raise
                await consumer.stop()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await admin.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await end_reader.stop()

    async def _lag_loop(self, end_reader, admin) -> None:
        """Sample the scoring group's lag every ``lag_interval_s`` until cancelled.

        It is also the feed's check that the broker answers: aiokafka's consumer retries a
        lost broker on its own and raises nothing, so without it the page said "connected"
        through an outage. A sample that takes over :data:`LAG_SAMPLE_TIMEOUT_S` raises
        ``TimeoutError``, which ends the connection and reconnects with backoff.
        """
        while not self._stop.is_set():
            await asyncio.wait_for(self._sample_lag(end_reader, admin), timeout=LAG_SAMPLE_TIMEOUT_S)
            await asyncio.sleep(self.lag_interval_s)

    async def _sample_lag(self, end_reader, admin) -> None:
        """End offsets of ``customers`` minus the scoring group's committed offsets, summed over partitions.

        The end offsets are those the broker serves (:func:`served_end_offsets`), read by
        ``end_reader``, a group-less consumer of its own.

        The committed offsets are asked for explicit partitions: Tansu cannot answer an
        OffsetFetch for "all partitions of the group" (the connection closes), Apache
        Kafka answers both forms.
        """
        from aiokafka import TopicPartition

        group = self.consumer_group
        partitions = set()
        # Asked on every sample, also while committed offsets are not asked for: the broker check.
        for topic in await admin.describe_topics([self.customers_topic]):
            if topic.get("topic") == self.customers_topic and not topic.get("error_code"):
                partitions = {p.get("partition", p.get("partition_index")) for p in topic.get("partitions", [])}
        partitions.discard(None)
        if not partitions:
            self.buffers.add_lag(None, f"n/a: topic {self.customers_topic!r} does not exist yet")
            return
        if time.monotonic() < self._lag_retry_at:
            return
        tps = [TopicPartition(self.customers_topic, p) for p in sorted(partitions)]
        try:
            committed = await asyncio.wait_for(admin.list_consumer_group_offsets(group, partitions=tps), timeout=5)
        except Exception as exc:  # noqa: BLE001 - a broker that cannot answer: say so, ask again later
            self._lag_retry_at = time.monotonic() + LAG_RETRY_S
            logger.warning("consumer lag unavailable group=%s error=%s", group, f"{type(exc).__name__}: {exc}"[:200])
            self.buffers.add_lag(
                None,
                f"n/a: the broker did not answer the committed offsets of consumer group "
                f"{group!r} ({type(exc).__name__}); asking again in {LAG_RETRY_S:.0f} s",
            )
            return
        ours = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
        if not ours:
            self.buffers.add_lag(None, f"n/a: consumer group {group!r} has no committed offsets yet")
            return
        end = await served_end_offsets(end_reader, tps)
        missing = [tp for tp in tps if tp not in ours]
        start = await end_reader.beginning_offsets(missing) if missing else {}
        lag = sum(max(0, end[tp] - ours.get(tp, start.get(tp, 0))) for tp in tps)
        self.buffers.add_lag(int(lag))
