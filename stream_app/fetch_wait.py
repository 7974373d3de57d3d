"""The scoring consumer's fetch wait, lengthened while the broker answers empty although records wait.

See :class:`FetchWaitPolicy` for why (the durable Tansu) and how it decides.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Longest the broker may hold a fetch with nothing new (``fetch.wait.max.ms``). Measured on
#: Tansu 0.6.0 in memory: a record's delivery delay grows with it (p50 1.4 / 3.3 / 14 ms at
#: 1 / 10 / 50 ms), i.e. new records do not end the wait at once. It is not lower because
#: the durable Tansu answers fetches shorter than its storage read empty: at 2 ms a worker
#: on it starved completely (``churn bench faults``, worker_kill).
FETCH_MAX_WAIT_MS = 10
#: The fetch wait while the broker answers empty although records wait. Measured on the
#: durable Tansu, 4,000 records sent one per batch, read from the start: 1 record in 15 s at
#: 10 ms, all 4,000 in 6.7 / 4.2 / 2.9 s at 50 / 100 / 500 ms.
FETCH_MAX_WAIT_CEILING_MS = 500


class FetchWaitPolicy:
    """Decide when the scoring consumer needs a longer (or again the short) fetch wait.

    A broker may answer a fetch empty when reading the partition takes longer than the
    request's wait: the durable Tansu (topics in S3) does once a backlog of small record
    batches has built up, and a worker at 10 ms then never received another record
    (``churn bench faults`` scenario ``durable_backlog``: 0 of 10,000 scored in 312 s). The
    short wait is kept for latency (Tansu holds a fetch with nothing new for its whole wait).

    librdkafka reads ``fetch.wait.max.ms`` once, when the consumer is created: a change
    means a new consumer (the loop closes the old one, which commits and leaves the
    group, and subscribes a new one). So changes are rare: the wait goes to ``ceiling_ms``
    after ``starve_s`` seconds in which polls brought nothing while records waited past the
    consumer's position on an assigned partition, and back to ``floor_ms`` after ``relax_s``
    seconds caught up (nothing waiting) without starving. Apache Kafka answers as soon as
    records exist: there it never moves.

    Parameters
    ----------
    floor_ms, ceiling_ms : int
        The short and the long fetch wait, milliseconds.
    starve_s : float, default 3.0
        Seconds of empty polls with records waiting before the wait goes up.
    relax_s : float, default 300.0
        Seconds caught up before the wait comes down again.
    check_s : float, default 0.5
        Least seconds between two looks at the positions (``behind`` calls).
    clock : callable, default time.monotonic
        Injectable for tests.

    Attributes
    ----------
    current_ms : int
        The fetch wait the consumer was created with, milliseconds.

    Raises
    ------
    ValueError
        If not ``1 <= floor_ms <= ceiling_ms``.
    """

    def __init__(
        self,
        floor_ms: int = FETCH_MAX_WAIT_MS,
        ceiling_ms: int = FETCH_MAX_WAIT_CEILING_MS,
        starve_s: float = 3.0,
        relax_s: float = 300.0,
        check_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= floor_ms <= ceiling_ms:
            raise ValueError(f"fetch wait: expected 1 <= floor_ms <= ceiling_ms, got {floor_ms}, {ceiling_ms}")
        self.floor_ms, self.ceiling_ms = int(floor_ms), int(ceiling_ms)
        self.starve_s, self.relax_s, self.check_s = starve_s, relax_s, check_s
        self.clock = clock
        self.current_ms = self.floor_ms
        self.reset()

    def reset(self) -> None:
        """Forget what was seen (a new consumer or a new assignment)."""
        now = self.clock()
        self._last_records = now
        self._last_check = float("-inf")
        self._caught_up_since: float | None = None

    def got_records(self) -> None:
        """A poll brought records (the hot path: one clock read)."""
        self._last_records = self.clock()

    def got_nothing(self, behind: Callable[[], int | None]) -> int | None:
        """A poll brought nothing; the fetch wait to change to, or ``None`` to keep the current one.

        Parameters
        ----------
        behind : callable () -> int or None
            Records between the consumer's positions and the assigned partitions' high
            watermarks (``None``: unknown yet). Called at most every ``check_s``.
        """
        now = self.clock()
        if now - self._last_check < self.check_s:
            return None
        self._last_check = now
        waiting = behind()
        if waiting is None:
            return None
        if waiting > 0:
            self._caught_up_since = None
            if self.current_ms < self.ceiling_ms and now - self._last_records >= self.starve_s:
                return self._set(
                    self.ceiling_ms, f"polls empty for {now - self._last_records:.1f} s while {waiting} records waited"
                )
            return None
        if self._caught_up_since is None:
            self._caught_up_since = now
        if self.current_ms > self.floor_ms and now - self._caught_up_since >= self.relax_s:
            return self._set(self.floor_ms, f"caught up for {now - self._caught_up_since:.0f} s")
        return None

    def _set(self, ms: int, why: str) -> int:
        logger.info("fetch wait %d -> %d ms: %s", self.current_ms, ms, why)
        self.current_ms = ms
        self.reset()
        return ms
