"""The hot loop's acknowledgement counting, committer and fetch-wait policy (commit.py, fetch_wait.py)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from stream_app.commit import BatchAcks, InFlightBatch, OffsetCommitter, SendFailed
from stream_app.fetch_wait import FetchWaitPolicy


def test_a_batch_is_done_when_every_record_is_reported():
    acks = BatchAcks()
    acks.pending += 3
    acks.delivered(None, None)
    acks.delivered(None, None)
    assert not acks.done
    acks.delivered(None, None)
    assert acks.done and acks.error is None


def test_the_first_delivery_error_is_kept():
    acks = BatchAcks()
    acks.pending += 2
    first, second = KafkaError(KafkaError._MSG_TIMED_OUT), KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    acks.delivered(first, None)
    acks.delivered(second, None)
    assert acks.done and acks.error is first


class _Commits:
    """Records what would be committed (the offsets API of confluent_kafka.Consumer, no broker)."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict, bool]] = []

    def commit(self, offsets, asynchronous=True):
        self.calls.append(({(tp.topic, tp.partition): tp.offset for tp in offsets}, asynchronous))


def _batch(offsets: dict, pending: int) -> InFlightBatch:
    acks = BatchAcks()
    acks.pending = pending
    return InFlightBatch(offsets, acks, 10, None, None, 0.0)


def test_only_the_acknowledged_prefix_is_committed_in_order():
    consumer, booked = _Commits(), []
    committer = OffsetCommitter(consumer, lambda b, at, o: booked.append(o), lambda: {("in", 0), ("in", 1)})
    first, second, third = _batch({("in", 0): 10}, 0), _batch({("in", 0): 20}, 1), _batch({("in", 1): 5}, 0)
    for b in (first, second, third):
        committer.submit(b)
    assert committer.advance(force=True) == 1  # the third is acknowledged but waits behind the second
    assert consumer.calls == [({("in", 0): 10}, True)]
    second.acks.delivered(None, None)
    assert committer.advance(force=True, synchronous=True) == 2
    assert consumer.calls[-1] == ({("in", 0): 20, ("in", 1): 5}, False)
    assert len(booked) == 3 and not committer.in_flight


def test_commits_wait_for_the_interval_unless_forced():
    consumer = _Commits()
    committer = OffsetCommitter(consumer, lambda b, at, o: None, lambda: {("in", 0)}, interval_s=60)
    committer.submit(_batch({("in", 0): 3}, 0))
    assert committer.advance() == 0 and consumer.calls == []
    assert committer.advance(force=True) == 1


def test_a_failed_output_stops_the_commits_before_its_batch():
    consumer = _Commits()
    committer = OffsetCommitter(consumer, lambda b, at, o: None, lambda: {("in", 0)})
    bad = _batch({("in", 0): 3}, 1)
    bad.acks.delivered(KafkaError(KafkaError._MSG_TIMED_OUT), None)
    committer.submit(bad)
    with pytest.raises(SendFailed, match="not delivered"):
        committer.advance(force=True)
    assert consumer.calls == [] and committer.in_flight  # never committed


def test_partitions_no_longer_held_are_not_committed():
    consumer, booked = _Commits(), []
    committer = OffsetCommitter(consumer, lambda b, at, o: booked.append(o), lambda: {("in", 1)})
    committer.submit(_batch({("in", 0): 7, ("in", 1): 9}, 0))
    committer.advance(force=True)
    assert consumer.calls == [({("in", 1): 9}, True)] and booked == [{("in", 1): 9}]


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_fetch_wait_goes_up_only_after_starving_with_records_waiting():
    clock = _Clock()
    policy = FetchWaitPolicy(floor_ms=10, ceiling_ms=500, starve_s=3.0, relax_s=60.0, check_s=0.5, clock=clock)
    clock.t = 2.0
    assert policy.got_nothing(lambda: 100) is None  # not long enough
    clock.t = 3.5
    assert policy.got_nothing(lambda: 0) is None  # caught up: nothing waits
    clock.t = 4.0
    assert policy.got_nothing(lambda: 100) == 500
    assert policy.current_ms == 500


def test_fetch_wait_comes_down_after_being_caught_up_for_relax_s():
    clock = _Clock()
    policy = FetchWaitPolicy(floor_ms=10, ceiling_ms=500, starve_s=1.0, relax_s=60.0, check_s=0.5, clock=clock)
    clock.t = 2.0
    assert policy.got_nothing(lambda: 5) == 500
    clock.t = 3.0
    assert policy.got_nothing(lambda: 0) is None  # caught up from now
    clock.t = 62.0
    assert policy.got_nothing(lambda: 0) is None
    clock.t = 63.5
    assert policy.got_nothing(lambda: 0) == 10


def test_fetch_wait_rejects_a_floor_above_the_ceiling():
    with pytest.raises(ValueError, match="floor_ms <= ceiling_ms"):
        FetchWaitPolicy(floor_ms=600, ceiling_ms=500)
