"""The verdicts of ``churn bench dashboard``: memory flat, callbacks within their interval, page updating."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Longest stretch without the live score count rising that still counts as "kept updating", s.
STALL_LIMIT_S = 5.0


def rss_summary(rss: list[tuple[float, float]], warm_s: float) -> dict[str, Any]:
    """Resident memory at start, after warm-up and at the end, its slopes (MB/h) and maximum.

    Parameters
    ----------
    rss : list of (float, float)
        Samples: (seconds since start, MB).
    warm_s : float
        End of the warm-up, seconds.

    Returns
    -------
    dict

    Raises
    ------
    RuntimeError
        If fewer than two samples follow the warm-up.
    """
    t = np.array([s[0] for s in rss])
    mb = np.array([s[1] for s in rss])
    after = t >= warm_s
    if after.sum() < 2:
        raise RuntimeError(f"too few memory samples after the {warm_s:.0f} s warm-up: run longer")
    warm_mb = float(mb[after][0])
    # The last minute's median (or the last sample): one allocator spike is not the end state.
    tail = mb[t >= t[-1] - 60]
    end_mb = float(np.median(tail))
    slope = float(np.polyfit(t[after], mb[after], 1)[0] * 3600)
    # A leak grows at a steady rate; allocator high-water marks level off. The last half's slope tells them apart.
    late = t >= (warm_s + t[-1]) / 2
    late_slope = float(np.polyfit(t[late], mb[late], 1)[0] * 3600) if late.sum() >= 2 else float("nan")
    return {
        "rss_start_mb": float(mb[0]),
        "rss_after_warmup_mb": warm_mb,
        "rss_end_mb": end_mb,
        "rss_max_mb": float(mb.max()),
        "rss_growth_after_warmup_mb": end_mb - warm_mb,
        "rss_slope_mb_per_h": slope,
        "rss_slope_last_half_mb_per_h": late_slope,
        "rss_samples": int(mb.size),
        "warmup_s": warm_s,
        "rss_mb_by_s": [[round(float(a), 1), round(float(b), 2)] for a, b in zip(t, mb)],
    }


def callback_summary(cb: dict[str, Any], poll: dict[str, Any]) -> dict[str, Any]:
    """Server and round-trip durations of one timer callback against its refresh interval.

    Parameters
    ----------
    cb : dict
        The callback, from ``timer_callbacks``.
    poll : dict
        What polling it recorded (``server_ms``, ``round_trip_ms``, ``statuses``).

    Returns
    -------
    dict
    """
    server = np.array(poll["server_ms"]) if poll["server_ms"] else np.array([np.nan])
    rt = np.array(poll["round_trip_ms"]) if poll["round_trip_ms"] else np.array([np.nan])
    return {
        "interval_ms": cb["interval_ms"],
        "polls": len(poll["round_trip_ms"]),
        "statuses": poll["statuses"],
        "server_p50_ms": float(np.percentile(server, 50)),
        "server_p99_ms": float(np.percentile(server, 99)),
        "server_max_ms": float(server.max()),
        "round_trip_p99_ms": float(np.percentile(rt, 99)),
        "round_trip_max_ms": float(rt.max()),
        "within_interval": bool(poll["server_ms"]) and float(server.max()) < cb["interval_ms"],
    }


def updates_summary(counts: list[tuple[float, int | None]]) -> dict[str, Any]:
    """Whether the live score count kept rising: rises, and the longest stretch without one.

    Parameters
    ----------
    counts : list of (float, int or None)
        (epoch seconds, the live count shown; None when unreadable).

    Returns
    -------
    dict
        ``kept_updating`` is True when no stretch exceeds :data:`STALL_LIMIT_S`.
    """
    values = [c for _, c in counts if c is not None]
    rises = sum(1 for a, b in zip(values, values[1:]) if b > a)
    longest = 0.0
    last_rise = counts[0][0] if counts else 0.0
    prev = None
    for t, c in counts:
        if c is not None and prev is not None and c > prev:
            last_rise = t
        longest = max(longest, t - last_rise)
        prev = c if c is not None else prev
    return {
        "live_polls": len(counts),
        "live_count_first": values[0] if values else None,
        "live_count_last": values[-1] if values else None,
        "live_count_rises": rises,
        "live_longest_without_rise_s": longest,
        "kept_updating": len(values) >= 2 and longest <= STALL_LIMIT_S,
    }
