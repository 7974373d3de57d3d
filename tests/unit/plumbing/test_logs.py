"""The repeated-message filter on library loggers (aiokafka's reconnection errors)."""

from __future__ import annotations

import logging

import pytest

from plumbing.logs import RepeatedMessageFilter, limit_repeated_logs


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def captured():
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _Keep()
    yield records, handler


def test_first_of_a_kind_passes_then_one_per_interval_with_the_count_dropped(captured):
    records, handler = captured
    clock = _Clock()
    log = logging.getLogger("test.logs.kinds")
    log.propagate = False
    log.addHandler(handler)
    log.addFilter(RepeatedMessageFilter(10.0, clock=clock))
    try:
        for i in range(50):  # 50 reconnection errors within 4.9 s: one line
            log.error("Unable connect to node with id %s: %s", 111, f"attempt {i}")
            clock.now += 0.1
        log.error("Unable to update metadata from [%s]", 111)  # another kind passes at once
        log.warning("Unable connect to node with id %s: %s", 111, "x")  # another level is another kind
        clock.now += 5.2  # 10.1 s after the first
        log.error("Unable connect to node with id %s: %s", 111, "attempt 50")
    finally:
        log.removeHandler(handler)
    assert [r.getMessage() for r in records] == [
        "Unable connect to node with id 111: attempt 0",
        "Unable to update metadata from [111]",
        "Unable connect to node with id 111: x",
        "Unable connect to node with id 111: attempt 50 [49 more like this in the last 10 s not logged]",
    ]


def test_quiet_kind_logs_again_without_a_count_and_the_table_is_bounded():
    clock = _Clock()
    flt = RepeatedMessageFilter(10.0, clock=clock, max_kinds=3)

    def rec(msg: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, msg, (), None)

    first = rec("a")
    assert flt.filter(first) and first.getMessage() == "a"
    clock.now += 30
    again = rec("a")
    assert flt.filter(again) and again.getMessage() == "a"
    for m in ("b", "c", "d"):  # a fourth kind clears the table
        assert flt.filter(rec(m))
    assert len(flt._kinds) == 1
    assert flt.filter(rec("a"))  # forgotten, so it passes at once


def test_limit_repeated_logs_covers_existing_child_loggers_only_under_the_prefix():
    child = logging.getLogger("test_prefix_lib.consumer.fetcher")
    other = logging.getLogger("test_prefix_library_other")
    flt = limit_repeated_logs(["test_prefix_lib"])
    try:
        assert flt in child.filters and flt in logging.getLogger("test_prefix_lib").filters
        assert flt not in other.filters
    finally:
        for name in ("test_prefix_lib", "test_prefix_lib.consumer", "test_prefix_lib.consumer.fetcher"):
            logging.getLogger(name).removeFilter(flt)


def test_librdkafka_lines_are_kinds_by_their_facility(captured):
    records, handler = captured
    clock = _Clock()
    log = logging.getLogger("test.logs.librdkafka")
    log.propagate = False
    log.addHandler(handler)
    log.addFilter(RepeatedMessageFilter(10.0, clock=clock, kind_args=1))
    try:
        for _ in range(20):  # confluent_kafka's logger call: msg "%s [%s] %s", the facility first
            log.error("%s [%s] %s", "FAIL", "churn-worker#consumer-1", "Connect to 127.0.0.1:9092 failed")
            log.error("%s [%s] %s", "REQTMOUT", "churn-worker#consumer-1", "Timed out 1 in-flight request")
    finally:
        log.removeHandler(handler)
    assert [r.args[0] for r in records] == ["FAIL", "REQTMOUT"]
