"""Logging helpers shared by the long-running services (worker, API, dashboard)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import pkgutil
import threading
import time
from collections.abc import Callable, Iterable

#: Seconds between two records of the same kind from a rate-limited library logger.
REPEAT_INTERVAL_S = 10.0


class RepeatedMessageFilter(logging.Filter):
    """Pass the first record of each kind, then at most one per ``interval_s``.

    A record's kind is its logger, level and unformatted message (``record.msg``), so
    ``"Unable connect to node with id %s: %s"`` is one kind whatever the node and error.
    The record that ends a quiet period says how many of its kind were dropped before it.
    aiokafka logs every reconnection attempt at ERROR, about every 100 ms per connection:
    with the broker down for a minute a worker wrote some 10,000 such lines.

    Parameters
    ----------
    interval_s : float, default 10.0
        Seconds between two records of one kind.
    clock : callable, default time.monotonic
        Returns seconds (for tests).
    max_kinds : int, default 1024
        Kinds remembered; the table is cleared when it grows past this (memory bound).
    kind_args : int, default 0
        Leading arguments of the record that are part of its kind too: librdkafka's log lines
        (``confluent_kafka``'s ``logger`` property) all share the message ``"%s [%s] %s"``
        and carry their kind, the facility (``FAIL``, ``REQTMOUT``...), as the first argument.

    Notes
    -----
    Thread-safe: Faust runs its consumer in a thread of its own.
    """

    def __init__(
        self,
        interval_s: float = REPEAT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1024,
        kind_args: int = 0,
    ) -> None:
        super().__init__()
        self.interval_s, self._clock, self._max_kinds, self._kind_args = interval_s, clock, max_kinds, kind_args
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, int, str], list[float]] = {}  # kind -> [last passed at, dropped since]

    def filter(self, record: logging.LogRecord) -> bool:
        kind: tuple = (
            record.name,
            record.levelno,
            record.msg if isinstance(record.msg, str) else type(record.msg).__name__,
        )
        if self._kind_args and isinstance(record.args, tuple):
            kind += tuple(str(a) for a in record.args[: self._kind_args])
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval_s:
                seen[1] += 1
                return False
            dropped = int(seen[1]) if seen is not None else 0
            if seen is None and len(self._kinds) >= self._max_kinds:
                self._kinds.clear()
            self._kinds[kind] = [now, 0]
        if dropped and isinstance(record.msg, str):
            record.msg = f"{record.msg} [{dropped} more like this in the last {self.interval_s:.0f} s not logged]"
        return True


def limit_repeated_logs(
    prefixes: Iterable[str], interval_s: float = REPEAT_INTERVAL_S, kind_args: int = 0
) -> RepeatedMessageFilter:
    """Attach one :class:`RepeatedMessageFilter` to every logger under ``prefixes``.

    Logger filters are not inherited, so the filter goes on each logger whose name is a
    prefix or starts with ``prefix + "."``. Libraries create their module loggers on import,
    so each prefix that names an installed package is imported first, with every submodule
    (one that fails to import, e.g. for an optional dependency, is skipped).

    Parameters
    ----------
    prefixes : iterable of str
        Logger names (packages).
    interval_s : float, default REPEAT_INTERVAL_S
    kind_args : int, default 0
        See :class:`RepeatedMessageFilter`.

    Returns
    -------
    RepeatedMessageFilter
        The filter attached.
    """
    prefixes = tuple(prefixes)
    for prefix in prefixes:
        try:
            package = importlib.import_module(prefix)
        except ImportError:
            continue
        for module in pkgutil.walk_packages(getattr(package, "__path__", []), prefix + ".", onerror=lambda _: None):
            with contextlib.suppress(Exception):
                importlib.import_module(module.name)
    flt = RepeatedMessageFilter(interval_s, kind_args=kind_args)
    names = set(prefixes) | {
        n for n in logging.Logger.manager.loggerDict if any(n.startswith(p + ".") for p in prefixes)
    }
    for name in sorted(names):
        logging.getLogger(name).addFilter(flt)
    return flt
