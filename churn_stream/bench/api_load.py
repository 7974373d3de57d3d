"""The open-loop HTTP client of ``churn bench api``: one-customer requests on a fixed schedule.

Request *i* is due at ``t0 + i / rate`` and its latency counts from that due time, so a
slow server cannot hide queueing by slowing the client down. A pacer thread releases
requests on time; :data:`CONNECTIONS` keep-alive connections on uvloop send pre-encoded
requests and httptools parses the responses. Used by :mod:`churn_stream.bench.api` for the
API and for the bare Starlette reference alike.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

import numpy as np

#: Requests sent one at a time before measuring (connection set-up, caches, allocator).
WARMUP_REQUESTS = 320
#: Client connections (each its own keep-alive connection).
CONNECTIONS = 16
#: Linux prctl option: this thread's timer slack, nanoseconds.
_PR_SET_TIMERSLACK = 29


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: writes the pre-encoded request, httptools parses each response.

    A general-purpose client (httpx) spends ~0.3 ms of CPU per request building and
    parsing messages; on a loaded 2-core machine that CPU, not the server, set the tail.
    """

    def __init__(self, generator: _OpenLoop) -> None:
        import httptools

        self.generator = generator
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.request_index = -1

    def connection_made(self, transport) -> None:  # asyncio signature
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:  # httptools callback: one whole response arrived
        self.generator.completed(self, self.request_index, self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.generator.lost(self, exc)

    def send(self, index: int) -> None:
        if self.transport is None:
            raise RuntimeError("send before the connection was made")
        self.request_index = index
        self.transport.write(self.generator.request)


class _OpenLoop:
    """Open-loop load: request *i* is dispatched at ``t0 + i / rate`` on the first idle connection.

    When every connection is busy the request waits in a backlog and goes out as soon as one
    frees up; its latency still counts from its due time (no coordinated omission).
    Timestamps are ``time.monotonic()`` (the event loop's clock).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, request: bytes, n: int, rate: float) -> None:
        self.loop = loop
        self.request = request
        self.n = n
        self.rate = rate
        self.due = np.full(n, np.nan)
        self.sent = np.full(n, np.nan)
        self.done = np.full(n, np.nan)
        self.status = np.zeros(n, dtype=np.int32)
        self.idle: deque[_Connection] = deque()
        self.backlog: deque[int] = deque()
        self.next = 0
        self.remaining = n
        self.max_backlog = 0
        self.finished: asyncio.Future = loop.create_future()
        self.warming: asyncio.Future | None = None

    def start(self, t0: float) -> threading.Thread:
        """Start the pacer thread: it wakes the loop at each due time.

        The event loop's own timers have millisecond granularity (libuv and epoll), which
        alone would add ~1 ms to the median; ``time.sleep`` (nanosleep) wakes within ~0.1 ms.
        """
        self.due = t0 + np.arange(self.n) / self.rate
        pacer = threading.Thread(target=self._pace, name="bench-api-pacer", daemon=True)
        pacer.start()
        return pacer

    def _pace(self) -> None:
        _fine_timer_slack()
        for due in self.due.tolist():
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if self.finished.done():
                return
            self.loop.call_soon_threadsafe(self._tick)

    def _tick(self) -> None:
        now = time.monotonic()
        while self.next < self.n and self.due[self.next] <= now:
            self._dispatch(self.next)
            self.next += 1

    def _dispatch(self, i: int) -> None:
        if self.idle:
            conn = self.idle.popleft()
            self.sent[i] = time.monotonic()
            conn.send(i)
        else:
            self.backlog.append(i)
            self.max_backlog = max(self.max_backlog, len(self.backlog))

    def completed(self, conn: _Connection, i: int, status: int) -> None:
        now = time.monotonic()
        if i < 0:  # a warm-up request
            self.idle.append(conn)
            if self.warming is not None and not self.warming.done():
                self.warming.set_result(None)
            return
        self.done[i] = now
        self.status[i] = status
        self.remaining -= 1
        if self.backlog:
            j = self.backlog.popleft()
            self.sent[j] = now
            conn.send(j)
        else:
            self.idle.append(conn)
        if self.remaining == 0 and not self.finished.done():
            self.finished.set_result(None)

    def lost(self, conn: _Connection, exc: Exception | None) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.request_index >= 0 and np.isnan(self.done[conn.request_index]) and not self.finished.done():
            self.finished.set_exception(RuntimeError(f"the API closed a connection mid-request ({exc!r})"))


def _fine_timer_slack() -> None:
    """Let the calling thread's sleeps end on time (Linux; elsewhere a no-op).

    Linux may end a ``nanosleep`` up to the thread's timer slack late (50 us by default, so
    timers can be batched); in the pacer that lateness is half the median due -> send lag.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl: keep the default slack
        pass


def _predict_request(port: int, body: bytes, key: str) -> bytes:
    return (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _fixed_rate(
    port: int, body: bytes, rate: float, duration_s: float, key: str, connections: int = CONNECTIONS
) -> dict[str, Any]:
    """Send ``rate * duration_s`` one-customer requests open-loop; latencies from each due time.

    ``connections`` keep-alive connections are opened and warmed up first
    (:data:`WARMUP_REQUESTS` in all). The client's garbage collector is frozen and paused
    during the run, so a collection of its own heap cannot delay a send.
    """
    loop = asyncio.get_running_loop()
    n = int(rate * duration_s)
    gen = _OpenLoop(loop, _predict_request(port, body, key), n, rate)
    conns = []
    for _ in range(connections):
        _, conn = await loop.create_connection(lambda: _Connection(gen), "127.0.0.1", port)
        conns.append(conn)
    try:
        for _ in range(max(1, WARMUP_REQUESTS // connections)):
            for conn in conns:
                gen.warming = loop.create_future()
                conn.send(-1)
                await gen.warming
                gen.idle.remove(conn)
        gen.idle.extend(conns)
        gc.collect()
        gc.freeze()
        gc.disable()
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)  # the pacer thread gets the GIL promptly when the loop is busy
        try:
            t0 = time.monotonic() + 0.05
            pacer = gen.start(t0)
            await asyncio.wait_for(gen.finished, timeout=duration_s + 60)
            elapsed = time.monotonic() - t0
            pacer.join(timeout=5)
        finally:
            sys.setswitchinterval(switch_interval)
            gc.enable()
            gc.unfreeze()
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
    statuses: dict[int, int] = {}
    for code, count in zip(*np.unique(gen.status, return_counts=True)):
        statuses[int(code)] = int(count)
    return {
        "n": n,
        "elapsed_s": elapsed,
        "due_latency_s": gen.done - gen.due,
        "service_latency_s": gen.done - gen.sent,
        "send_lag_s": gen.sent - gen.due,
        "statuses": statuses,
        "max_backlog": gen.max_backlog,
    }


def _run_loop(coro):
    """Run ``coro`` on uvloop when installed (the client's own overhead is part of every latency)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def measure(proc: subprocess.Popen, port: int, body: bytes, rate: float, duration_s: float, key: str) -> dict[str, Any]:
    """Open-loop load on the server ``proc`` serves on ``port``, and each side's CPU ms per request.

    Parameters
    ----------
    proc : subprocess.Popen
        The server (its CPU time is read through psutil).
    port : int
        Its loopback port.
    body : bytes
        The JSON body of every ``POST /api/predict``.
    rate : float
        Requests per second.
    duration_s : float
        Seconds of the measured run (after :data:`WARMUP_REQUESTS` warm-up requests).
    key : str
        The API key sent as ``Authorization: Bearer``.

    Returns
    -------
    dict
        ``n``, ``elapsed_s``, ``statuses`` (count per HTTP status), ``max_backlog``, the
        per-request ndarrays of shape (n,), float64, seconds: ``due_latency_s`` (due time to
        response), ``service_latency_s`` (send to response), ``send_lag_s`` (due time to
        send); and ``server_cpu_ms`` and ``client_cpu_ms``, CPU milliseconds per request
        (warm-up included).

    Raises
    ------
    RuntimeError
        The server closed a connection mid-request.
    TimeoutError
        The run did not finish within ``duration_s + 60`` seconds.
    """
    import psutil

    server_proc, client_proc = psutil.Process(proc.pid), psutil.Process()
    server_cpu, client_cpu = server_proc.cpu_times(), client_proc.cpu_times()
    run = _run_loop(_fixed_rate(port, body, rate, duration_s, key))
    # CPU seconds per request of each side (warm-up included): on a shared machine, what the
    # scheduler has to find for the server at this rate.
    run["server_cpu_ms"] = _cpu_s(server_proc.cpu_times(), server_cpu) * 1e3 / (run["n"] + WARMUP_REQUESTS)
    run["client_cpu_ms"] = _cpu_s(client_proc.cpu_times(), client_cpu) * 1e3 / (run["n"] + WARMUP_REQUESTS)
    return run


def _cpu_s(after, before) -> float:  # psutil cpu_times
    return (after.user - before.user) + (after.system - before.system)
