"""``wait_acknowledged``: the committer's wait for the producer's acknowledgements (:mod:`stream_app.commit`)."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.commit import wait_acknowledged


def test_cancelling_the_wait_leaves_the_send_futures_pending():
    """A worker shutting down cancels the committer mid-wait; the sends must stay awaitable.

    ``asyncio.gather`` cancelled its children, so the shutdown commit then failed on a
    cancelled future and skipped leaving the group.
    """

    async def run() -> tuple[bool, object]:
        loop = asyncio.get_running_loop()
        acks = [loop.create_future(), loop.create_future()]
        waiting = asyncio.create_task(wait_acknowledged(acks))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        cancelled = any(f.cancelled() for f in acks)
        for i, f in enumerate(acks):
            f.set_result(i)  # the broker's acknowledgement arrives after the cancel
        await wait_acknowledged(acks, timeout_s=1.0)  # the shutdown path can still wait for them
        return cancelled, [f.result() for f in acks]

    cancelled, results = asyncio.run(run())
    assert not cancelled
    assert results == [0, 1]


def test_a_failed_send_raises_its_error():
    async def run() -> None:
        loop = asyncio.get_running_loop()
        ok, failed = loop.create_future(), loop.create_future()
        ok.set_result(None)
        failed.set_exception(ConnectionError("broker gone"))
        await wait_acknowledged([ok, failed])

    with pytest.raises(ConnectionError, match="broker gone"):
        asyncio.run(run())


def test_unacknowledged_sends_time_out():
    async def run() -> None:
        await wait_acknowledged([asyncio.get_running_loop().create_future()], timeout_s=0.05)

    with pytest.raises(TimeoutError, match="1 of 1 sends not acknowledged"):
        asyncio.run(run())


def test_a_cancelled_send_is_an_error_not_a_cancellation_of_the_caller():
    async def run() -> None:
        f = asyncio.get_running_loop().create_future()
        f.cancel()
        await wait_acknowledged([f])

    with pytest.raises(RuntimeError, match="cancelled"):
        asyncio.run(run())


def test_no_sends_return_at_once():
    asyncio.run(wait_acknowledged([]))
