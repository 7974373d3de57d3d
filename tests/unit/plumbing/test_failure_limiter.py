"""The shared limit on refused credentials (prediction API and dashboard login)."""

from __future__ import annotations

import threading

from plumbing.failure_limiter import FailureLimiter


def test_the_limit_holds_until_the_oldest_counted_refusal_leaves_the_window():
    limiter = FailureLimiter(3, window_s=60.0)
    assert [limiter.record("10.0.0.1", t) for t in (0.0, 1.0, 2.0)] == [False, False, True]
    assert limiter.retry_after("10.0.0.1", 2.0) == 58
    assert limiter.retry_after("10.0.0.2", 2.0) is None  # per client
    assert limiter.retry_after("10.0.0.1", 60.5) is None  # the first refusal left the window


def test_concurrent_refusals_are_all_counted():
    limiter = FailureLimiter(10_000)
    threads = [threading.Thread(target=lambda: [limiter.record("c", 1.0) for _ in range(500)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert limiter.retry_after("c", 1.0) is None
    limiter.record("c", 1.0)  # 4,001 counted: still under 10,000
    assert len(limiter._failures["c"]) == 4001
