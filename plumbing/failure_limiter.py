"""Refused credentials per client address over a sliding window: the prediction API's and the dashboard's limit.

A client (an address) with ``max_failures`` refusals within ``window_s`` seconds must wait
until its oldest counted refusal is ``window_s`` old. The API answers it 429 with
``Retry-After``; the dashboard's login page answers it the same way. Both count refused
credentials only: a guesser cannot keep going by switching keys, and accepted ones cost
nothing here.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque

#: Seconds over which refusals per client are counted.
FAILURE_WINDOW_S = 60.0
#: Client addresses whose failures are remembered (oldest forgotten first): bounded memory.
MAX_TRACKED_CLIENTS = 10_000


class FailureLimiter:
    """Refusals per client address over the last ``window_s`` seconds.

    Thread-safe: the API calls it from its event loop, the dashboard from waitress's
    request threads.

    Parameters
    ----------
    max_failures : int
        Refusals within the window after which the client must wait.
    window_s : float, default 60
        The sliding window, seconds.
    """

    def __init__(self, max_failures: int, window_s: float = FAILURE_WINDOW_S) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str, now: float) -> int | None:
        """Seconds the client must wait (at least 1), or None when it may try.

        Parameters
        ----------
        client : str
            The client's address.
        now : float
            ``time.monotonic()``.

        Returns
        -------
        int or None
        """
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self.max_failures:
                return None
            return max(1, math.ceil(times[-self.max_failures] + self.window_s - now))

    def record(self, client: str, now: float) -> bool:
        """Count one refusal; True when it brings the client to the limit.

        Parameters
        ----------
        client : str
            The client's address.
        now : float
            ``time.monotonic()``.

        Returns
        -------
        bool
        """
        with self._lock:
            times = self._recent(client, now)
            if times is None:
                times = self._failures[client] = deque(maxlen=self.max_failures)
                while len(self._failures) > MAX_TRACKED_CLIENTS:
                    self._failures.popitem(last=False)
            times.append(now)
            self._failures.move_to_end(client)
            return len(times) >= self.max_failures
