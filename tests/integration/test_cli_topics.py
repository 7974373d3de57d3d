"""`churn consume` on a topic that does not exist says so in one line, exits 1 and creates nothing (issue 18)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.integration


async def _topics(settings) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    from plumbing.clients import kafka_kwargs

    admin = AIOKafkaAdminClient(**kafka_kwargs(settings))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_consume_never_creates_a_topic_and_says_it_does_not_exist(stack_settings, monkeypatch):
    from churn_stream import cli
    from plumbing.clients import ensure_topics

    monkeypatch.setattr(cli.Settings, "from_env", classmethod(lambda cls, environ=None: stack_settings))
    ensure_topics(stack_settings)
    missing = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(cli.main, ["consume", missing, "--limit", "1", "--timeout", "2"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: topic '{missing}' does not exist on ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert missing not in asyncio.run(_topics(stack_settings))
    present = CliRunner().invoke(cli.main, ["consume", "customers", "--limit", "1", "--timeout", "1"])
    assert present.exit_code == 0, present.output
