"""Progress of long jobs: a tqdm bar on a terminal, a quiet line every few seconds elsewhere.

On a terminal (stderr is a TTY) a :class:`Progress` is a tqdm bar that clears itself when
done. Elsewhere (CI, pipes, a service's log file) a redrawn bar would write one line per
redraw, so it logs one line to the :data:`PROGRESS_LOGGER` logger every
:data:`INTERVAL_S` seconds while the job runs, and nothing for a job shorter than that::

    telco classification: 5/12 models (45 %), random_forest, 38 s

The CLI shows that logger at INFO even when it hides other INFO records (see
``churn_stream.cli.app``); services log it like any other record.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, Any

from tqdm import tqdm

#: The logger of the periodic lines.
PROGRESS_LOGGER = "plumbing.progress"
#: Seconds between two periodic lines when stderr is not a terminal.
INTERVAL_S = 10.0

logger = logging.getLogger(PROGRESS_LOGGER)

#: Module-wide default of ``interval_s``; the CLI sets it from ``--progress-interval``.
_defaults: dict[str, float] = {"interval_s": INTERVAL_S}


#: Running :class:`Progress` objects in periodic-line mode, outermost first.
_active: list[Progress] = []
_active_lock = threading.Lock()


def set_interval(seconds: float) -> None:
    """Set the default seconds between periodic lines (``churn --progress-interval``).

    Parameters
    ----------
    seconds : float
        Positive.

    Raises
    ------
    ValueError
        If ``seconds`` is not positive.
    """
    if not seconds > 0:
        raise ValueError(f"progress interval: expected seconds > 0, got {seconds}")
    _defaults["interval_s"] = float(seconds)


def _plural(unit: str) -> str:
    return unit if unit.endswith("s") else unit + "s"


class Progress:
    """Progress of one job: a tqdm bar on a terminal, else a line every ``interval_s`` seconds.

    Use as a context manager (or call :meth:`close`); :meth:`update` counts work done,
    :meth:`set_postfix` names the item in progress. Thread-safe: the periodic line comes
    from a daemon thread of its own, so a single long step (one model's fit, a wait for
    scores) still shows that the job is alive.

    Parameters
    ----------
    desc : str
        What is being done (``"telco classification"``, ``"produce"``).
    total : int, optional
        Units of work in all; None when unknown.
    unit : str, default "item"
        Singular; the line adds an "s".
    stream : file-like, optional
        Where the bar goes; default ``sys.stderr``. Decides the mode too.
    tty : bool, optional
        Force the mode; default ``stream.isatty()``.
    interval_s : float, optional
        Seconds between periodic lines; default :data:`INTERVAL_S` (or :func:`set_interval`'s).
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        unit: str = "item",
        *,
        stream: IO[str] | None = None,
        tty: bool | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.n = 0
        self.postfix = ""
        self._stream = stream if stream is not None else sys.stderr
        self.tty = bool(self._stream.isatty()) if tty is None else tty
        self.interval_s = float(interval_s if interval_s is not None else _defaults["interval_s"])
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar: Any = None
        self._thread: threading.Thread | None = None
        if self.tty:
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self._stream, leave=False, dynamic_ncols=True)
        else:
            with _active_lock:
                _active.append(self)
            self._thread = threading.Thread(target=self._tick, name=f"progress {desc}", daemon=True)
            self._thread.start()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        with self._lock:
            self.n += n
            if self._bar is not None:
                self._bar.update(n)

    def set_postfix(self, text: str) -> None:
        """Name the item in progress (a model, a stage)."""
        with self._lock:
            self.postfix = text
            if self._bar is not None:
                self._bar.set_postfix_str(text)

    def _own_line(self) -> str:
        with self._lock:
            n, total, postfix = self.n, self.total, self.postfix
        done = f"{n:,}/{total:,} {_plural(self.unit)}" if total else f"{n:,} {_plural(self.unit)}"
        if total:
            done += f" ({100 * n / total:.0f} %)"
        return f"{self.desc}: {', '.join([done, postfix] if postfix else [done])}"

    def line(self) -> str:
        """The periodic line: ``desc: n/total units (pct %), postfix, elapsed s``.

        Inside another running :class:`Progress` (a cycle's models inside the demo's stages)
        the outer ones come first, joined by " > ", so one line says where the job is.
        """
        with _active_lock:
            outer = _active[: _active.index(self)] if self in _active else []
        own = f"{self._own_line()}, {time.monotonic() - self._start:.0f} s"
        return " > ".join([p._own_line() for p in outer] + [own])

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            with _active_lock:
                innermost = bool(_active) and _active[-1] is self
            if innermost:  # the innermost job speaks for its outer ones: one line per interval
                logger.info("%s", self.line())

    def close(self) -> None:
        """Stop the periodic line or clear the bar; idempotent."""
        self._stop.set()
        with _active_lock:
            if self in _active:
                _active.remove(self)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
