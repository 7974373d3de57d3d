"""The worker's output producer: librdkafka (``confluent_kafka.Producer``) with Kafka's default partitioner.

Outputs are queued with ``produce`` (librdkafka batches them per partition on its own
threads); every record's delivery report counts down its micro-batch's
:class:`~stream_app.commit.BatchAcks`. Delivery reports are served by ``poll(0)`` on the
loop's thread, once per pass of the hot loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer

from plumbing.clients import rdkafka_config
from plumbing.settings import Settings
from stream_app.commit import BatchAcks
from stream_app.consumer import RDKAFKA_LOGGER

#: Longest one ``produce`` waits for room in librdkafka's queue before it gives up, seconds.
QUEUE_FULL_WAIT_S = 30.0


def output_producer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka properties of the worker's output producer (holds credentials: never log it).

    ``acks=all`` (an output counts once every in-sync replica has it), no idempotence
    (Tansu refuses idempotent producers; at-least-once does not need it), Kafka's
    Java-compatible ``murmur2_random`` partitioner (a customer's scores land in the
    partition every Kafka client picks for that key), ``linger.ms=1``.

    Parameters
    ----------
    settings : Settings

    Returns
    -------
    dict of str to object
    """
    return {
        **rdkafka_config(settings),
        "client.id": "churn-worker",
        "acks": "all",
        "enable.idempotence": False,
        "partitioner": "murmur2_random",
        "linger.ms": 1,
        "batch.size": 512 * 1024,
        "message.max.bytes": 4 * 1024 * 1024,
        # Outputs queued and not yet acknowledged: bounded by the committer's MAX_IN_FLIGHT
        # batches anyway; these only bound a burst.
        "queue.buffering.max.messages": 100_000,
        "queue.buffering.max.kbytes": 64 * 1024,
        "compression.type": "none",
        "logger": RDKAFKA_LOGGER,
    }


class OutputProducer:
    """Queue pre-encoded records on a librdkafka producer, each counted by its batch's :class:`BatchAcks`.

    Parameters
    ----------
    producer : confluent_kafka.Producer
        Used from the loop's thread only.
    """

    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    @classmethod
    def from_settings(cls, settings: Settings) -> OutputProducer:
        """An :class:`OutputProducer` on a new producer configured by :func:`output_producer_config`."""
        return cls(Producer(output_producer_config(settings)))

    def send(self, topic: str, records: Sequence[tuple[bytes | None, bytes]], acks: BatchAcks) -> None:
        """Queue ``(key, value)`` records on ``topic``; each one's delivery report counts down ``acks``.

        Parameters
        ----------
        topic : str
        records : sequence of (bytes or None, bytes)
            Key and value; a record without a key goes to a random partition.
        acks : BatchAcks

        Raises
        ------
        BufferError
            librdkafka's queue stayed full for :data:`QUEUE_FULL_WAIT_S` (broker gone).
        confluent_kafka.KafkaException
            A record exceeds ``message.max.bytes`` or the topic is unknown.
        """
        if not records:
            return
        produce, delivered = self.producer.produce, acks.delivered
        acks.pending += len(records)
        for i, (key, value) in enumerate(records):
            try:
                produce(topic, value, key, -1, delivered)  # positional: a third cheaper than keywords
            except BufferError:
                self._wait_for_room(topic, records[i:], acks)
                return
            except BaseException:
                acks.pending -= len(records) - i
                raise

    def _wait_for_room(self, topic: str, rest: Sequence[tuple[bytes | None, bytes]], acks: BatchAcks) -> None:
        # The queue is full: serve delivery reports until there is room (blocking: nothing
        # else could go on anyway).
        deadline = time.monotonic() + QUEUE_FULL_WAIT_S
        for i, (key, value) in enumerate(rest):
            while True:
                try:
                    self.producer.produce(topic, value, key, on_delivery=acks.delivered)
                    break
                except BufferError:
                    if time.monotonic() > deadline:
                        acks.pending -= len(rest) - i
                        raise
                    self.producer.poll(0.05)

    def send_one(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record whose delivery nothing waits for (reports such as ``churn-drift``).

        Raises
        ------
        BufferError
            librdkafka's queue is full.
        """
        self.producer.produce(topic, value, key)

    def poll(self) -> int:
        """Serve the delivery reports that arrived (non-blocking); the number served."""
        return self.producer.poll(0)

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` until every queued record is reported; the number still queued."""
        return self.producer.flush(timeout_s)

    def __len__(self) -> int:
        """Records queued and not yet reported."""
        return len(self.producer)
