"""The scoring consumer's fetch wait, lengthened while the broker answers empty although records wait.

See :class:`AdaptiveFetchWait` for why (the durable Tansu) and how it decides.
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError

logger = logging.getLogger(__name__)

#: ``getmany`` returns at once when records are buffered; this only bounds an idle wait.
GETMANY_TIMEOUT_MS = 100
#: Longest the broker may hold a fetch with nothing new. Measured on Tansu 0.6.0 in memory: a
#: record's delivery delay grows with it (p50 1.4 / 3.3 / 14 ms at 1 / 10 / 50 ms), i.e. new
#: records do not end the wait at once. It is not lower because the durable Tansu answers
#: fetches shorter than its storage read empty: at 2 ms a worker on it starved completely
#: (``churn bench faults``, worker_kill).
FETCH_MAX_WAIT_MS = 10
#: Ceiling of the fetch wait while the broker answers empty although records wait (see
#: :class:`AdaptiveFetchWait`). Measured on the durable Tansu, 4,000 records sent one per
#: batch, read from the start: 1 record in 15 s at 10 ms, all 4,000 in 6.7 / 4.2 / 2.9 s at
#: 50 / 100 / 500 ms.
FETCH_MAX_WAIT_CEILING_MS = 2000


class AdaptiveFetchWait:
    """The consumer's fetch wait, lengthened while the broker answers empty although records wait.

    A broker may answer a fetch empty when reading the partition takes longer than the
    request's ``fetch_max_wait_ms``: the durable Tansu (topics in S3) does once a backlog of
    small record batches has built up, and a worker at 10 ms then never received another
    record (``/health`` "stalled"; ``churn bench faults`` scenario ``durable_backlog``: 0 of
    10,000 scored in 312 s). The short wait is kept for latency (Tansu holds a fetch with
    nothing new for its whole wait). Polls (each longer than a whole fetch, see
    :attr:`poll_timeout_ms`) are counted in windows of ``window_s``: when more than half of a
    window's polls came back empty while some assigned partition's high
    watermark was past the consumer's position, the wait goes to ``ceiling_ms`` (doubling
    stopped short: at 80 ms most fetches brought a few records, and the backlog drained at
    ~50 events/s); when a window saw the consumer caught up (an empty poll with nothing
    waiting, or a window's last poll after which nothing waits) and no starvation, and the wait last
    changed ``relax_s`` ago, it is halved
    (down to ``floor_ms``). Apache Kafka answers as soon as records exist: there it does
    not move, and a long wait would cost nothing if it did.

    Parameters
    ----------
    consumer : aiokafka.AIOKafkaConsumer
        Started. aiokafka reads its fetcher's ``_fetch_max_wait_ms`` for every Fetch
        request; there is no public setter, so that attribute is set (aiokafka 0.10-0.14;
        ``tests/integration/test_faults.py`` fails if it stops working).
    floor_ms, ceiling_ms : int
        Shortest and longest fetch wait, milliseconds.
    window_s : float, default 1.0
        Seconds per counting window.
    relax_s : float, default 5.0
        Least seconds between a change and a halving.
    learn_s : float, default 300.0
        For this long after a starvation, the wait is not halved below twice the wait that
        starved (a grown durable partition starved again at 31 ms after relaxing).

    Attributes
    ----------
    current_ms : int
        The fetch wait in use, milliseconds.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        floor_ms: int = FETCH_MAX_WAIT_MS,
        ceiling_ms: int = FETCH_MAX_WAIT_CEILING_MS,
        window_s: float = 1.0,
        relax_s: float = 5.0,
        learn_s: float = 300.0,
    ) -> None:
        if not 1 <= floor_ms <= ceiling_ms:
            raise ValueError(f"fetch wait: expected 1 <= floor_ms <= ceiling_ms, got {floor_ms}, {ceiling_ms}")
        self.consumer = consumer
        self.floor_ms, self.ceiling_ms = int(floor_ms), int(ceiling_ms)
        self.window_s, self.relax_s, self.learn_s = window_s, relax_s, learn_s
        self.current_ms = self.floor_ms
        self._learned_floor_ms, self._learned_at = self.floor_ms, float("-inf")
        self._last_change = time.monotonic()
        self.reset_clock()

    @property
    def poll_timeout_ms(self) -> int:
        """``getmany``'s timeout: longer than a whole fetch, so an empty poll means an empty answer.

        ``getmany`` returns as soon as records are fetched; the timeout only bounds a poll
        that gets none. With a poll shorter than the fetch wait, polls would come back empty
        while a fetch that will bring records is still on its way, and count as starved.
        """
        return max(GETMANY_TIMEOUT_MS, 2 * self.current_ms + 50)

    def reset_clock(self) -> None:
        """Start a new counting window (after a rebalance, when nothing could be fetched)."""
        self._window_start = time.monotonic()
        self._polls = self._starved = 0
        self._caught_up = False
        self._behind = 0

    async def got_records(self) -> None:
        """``getmany`` returned records (the hot path: positions are looked at once per window only)."""
        self._polls += 1
        if time.monotonic() - self._window_start >= self.window_s:
            if not self._caught_up and await self._records_waiting() == 0:
                self._caught_up = True  # a stream flowing at the head
            self._maybe_adjust()

    async def got_nothing(self) -> None:
        """``getmany`` returned nothing: starved if records wait on an assigned partition, else caught up."""
        self._polls += 1
        behind = await self._records_waiting()
        if behind is None:
            return
        if behind:
            self._starved += 1
            self._behind = behind
        else:
            self._caught_up = True
        self._maybe_adjust()

    async def _records_waiting(self) -> int | None:
        """Records between the consumer's positions and the last fetch responses' high watermarks."""
        behind = 0
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)  # from the last fetch response, empty ones included
            if hw is not None:
                try:
                    behind += max(0, hw - await self.consumer.position(tp))
                except IllegalStateError:  # revoked meanwhile
                    return None
        return behind

    def _maybe_adjust(self) -> None:
        now = time.monotonic()
        if now - self._window_start < self.window_s:
            return
        polls, starved, caught_up, behind = self._polls, self._starved, self._caught_up, self._behind
        self.reset_clock()
        if 2 * starved > polls:
            # Twice the starving wait becomes the floor for a while: halving back under it
            # starved again (measured: 2000 -> ... -> 31 ms, starved, 2000 again, every ~35 s).
            self._learned_floor_ms, self._learned_at = min(self.ceiling_ms, 2 * self.current_ms), now
            if self.current_ms < self.ceiling_ms:
                self._set(self.ceiling_ms, now, f"{starved} of {polls} polls empty while {behind} records waited")
            return
        floor = self.floor_ms if now - self._learned_at > self.learn_s else max(self.floor_ms, self._learned_floor_ms)
        if caught_up and not starved and self.current_ms > floor and now - self._last_change >= self.relax_s:
            self._set(max(floor, self.current_ms // 2), now, "caught up")

    def _set(self, ms: int, now: float, why: str) -> None:
        logger.info("fetch wait %d -> %d ms: %s", self.current_ms, ms, why)
        self.current_ms = ms
        self._last_change = now
        self.consumer._fetcher._fetch_max_wait_ms = ms  # see the class docstring
