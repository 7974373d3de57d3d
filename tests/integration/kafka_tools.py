"""Test helpers around Kafka: reading whole topics, and Debian's kcat as an independent client."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import orjson


def read_topic(settings, topic: str, timeout_s: float = 5.0) -> list[dict]:
    """Every record of ``topic`` from the beginning (JSON values), stopping after ``timeout_s`` idle."""
    from plumbing.clients import consume_topic

    return list(consume_topic(settings, topic, from_beginning=True, idle_timeout_s=timeout_s))


def wait_for_count(settings, topic: str, predicate, expected: int, timeout_s: float = 120.0) -> list[dict]:
    """Read ``topic`` until ``expected`` records match ``predicate`` (or time out); return the matches."""
    from aiokafka import AIOKafkaConsumer

    from plumbing.clients import decode_record, kafka_kwargs

    async def run() -> list[dict]:
        consumer = AIOKafkaConsumer(
            topic, **kafka_kwargs(settings), group_id=None, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        found: list[dict] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while len(found) < expected and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=500, max_records=5000)
                for msgs in batch.values():
                    for m in msgs:
                        rec = {
                            "partition": m.partition,
                            "offset": m.offset,
                            "key": m.key,
                            "value": decode_record(m.value),
                        }
                        if predicate(rec):
                            found.append(rec)
        finally:
            await consumer.stop()
        return found

    return asyncio.run(run())


def librdkafka_dir() -> Path:
    """A folder holding a current librdkafka for Debian's kcat.

    Debian 12's librdkafka 2.0.2 cannot parse the ApiVersions v3 response of Tansu
    (it reads a tagged field as a huge length: "Read underflow"), so kcat runs with
    the librdkafka that the confluent-kafka wheel bundles. kcat itself is Debian's.
    """
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    lib = next(libs.glob("librdkafka*.so*"))
    out = Path(tempfile.gettempdir()) / "churn-kcat-librdkafka"
    out.mkdir(exist_ok=True)
    target = out / "librdkafka.so.1"
    if not target.exists():
        shutil.copy(lib, target)
    return out


def kcat_read(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[bytes]:
    """Every record value of ``topic`` as read by Debian's ``kcat -C -e``."""
    kcat = shutil.which("kcat")
    if kcat is None:
        raise RuntimeError("kcat is not installed (Debian package 'kcat'; `make test` installs it)")
    env = dict(os.environ, LD_LIBRARY_PATH=str(librdkafka_dir()))
    out = subprocess.run(
        [kcat, "-b", bootstrap, "-C", "-t", topic, "-e", "-q", "-D", "\n"],
        env=env,
        capture_output=True,
        timeout=timeout_s,
        check=True,
    )
    return [line for line in out.stdout.split(b"\n") if line]


def parse_json_lines(lines: list[bytes]) -> list[dict]:
    """Each line as a JSON object."""
    return [orjson.loads(line) for line in lines]
