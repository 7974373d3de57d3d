"""Send a micro-batch's pre-encoded outputs with one producer record batch per partition.

Per-message sends (one Faust or aiokafka ``send`` per record) were most of a
micro-batch's time (``churn bench stream``); :class:`BatchSender` builds one record
batch per partition instead, with the default partitioner's choice of partition.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from functools import lru_cache

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

#: Producer record-batch size (bytes): a micro-batch's outputs to one partition fit in a few.
PRODUCE_BATCH_BYTES = 512 * 1024


@lru_cache(maxsize=1 << 18)
def _key_hash(key: bytes) -> int:
    # aiokafka's murmur2 is pure Python; keys (customer ids) repeat, so cache the hash.
    return murmur2(key) & 0x7FFFFFFF


class BatchSender:
    """Send pre-encoded records with one producer batch per partition.

    Partitions are chosen exactly like the default (Java-compatible murmur2)
    partitioner, so a customer's scores land where per-record sends put them.

    Parameters
    ----------
    producer : aiokafka.AIOKafkaProducer
        Started; its ``max_batch_size`` bounds each record batch.
    """

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def send(self, topic: str, records: Sequence[tuple[bytes | None, bytes]]) -> list[asyncio.Future]:
        """Queue ``(key, value)`` records; return futures that resolve when the broker acknowledges them.

        Parameters
        ----------
        topic : str
        records : sequence of (bytes or None, bytes)
            Key and value; a record without a key goes to a random partition.

        Returns
        -------
        list of asyncio.Future
            One per record batch sent; pass them to :func:`stream_app.commit.wait_acknowledged`.

        Raises
        ------
        ValueError
            A record does not fit in an empty producer batch.
        """
        if not records:
            return []
        partitions = sorted(await self.producer.partitions_for(topic))
        n = len(partitions)
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for key, value in records:
            p = partitions[_key_hash(key) % n] if key is not None else random.choice(partitions)
            by_partition.setdefault(p, []).append((key, value))
        futures = []
        for partition, recs in by_partition.items():
            batch = self.producer.create_batch()
            for key, value in recs:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await self.producer.send_batch(batch, topic, partition=partition))
                    batch = self.producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"record of {len(value)} bytes exceeds the producer batch size")
            if batch.record_count():
                futures.append(await self.producer.send_batch(batch, topic, partition=partition))
        return futures
