"""``churn bench dashboard``: the dashboard under a steady event stream — memory, callback time, updates.

Starts ``churn dashboard`` as a child process against the configured stack, and for
``duration_s`` seconds:

* **feeds** it ``rate`` score records per second on ``churn-scores`` (plus one
  ``churn-alerts`` record for each score at or above its threshold, as the worker does).
  The records are produced straight to the topics the dashboard reads instead of having
  the worker score customer events: the dashboard's work depends only on what it
  consumes, and a worker scoring 2,000 customers/s for an hour would take most of a core
  of a shared machine without changing what is measured here. The documents follow the
  :class:`~schemas.events.ScoreEvent` / :class:`~schemas.events.ChurnAlert` contracts.
* **polls every timer-driven callback the way the browser does**: the callbacks and
  their ``dcc.Interval`` refresh periods are read from the app's own ``/_dash-dependencies``
  and ``/_dash-layout``, each one is posted to ``/_dash-update-component`` once per its
  interval with the tab that makes it render, and its duration inside the server is read
  from the ``Server-Timing`` header the dashboard adds (the client round trip is reported
  beside it).
* **samples the dashboard process's resident memory** (psutil) every ``sample_s``.

The dashboard runs with its login on, as in production: the bench makes a key file of its
own with one ``models:read`` key, logs in with it at ``/login`` like a user, and polls with
that session's cookie (the login's cost per request is part of what is measured).

It reports RSS at start, after warm-up and at the end, the slope after warm-up (MB per
hour, least squares) and the maximum; per callback the p50, p99 and maximum server
duration against its refresh interval; and whether the live score count rose at every
poll. Verdicts: memory flat (growth after warm-up within :data:`FLAT_TOLERANCE_MB`),
every callback faster than its interval, the page kept updating.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from churn_stream.bench.dashboard_verdicts import callback_summary, rss_summary, updates_summary
from churn_stream.bench.score_feed import feed_scores
from plumbing.settings import Settings
from schemas.topics import Topics

logger = logging.getLogger(__name__)

#: Score records per second and seconds of the run (the issue's soak: one hour at 2,000/s).
RATE_PER_S = 2000
DURATION_S = 3600.0
#: Seconds between memory samples.
SAMPLE_S = 5.0
#: RSS growth from the end of the warm-up to the end of the run still called flat, MB.
FLAT_TOLERANCE_MB = 16.0
#: Broker bytes per score produced, its alert share included (measured on Tansu's memory:// storage:
#: 3.9 GB after 5.4 M scores).
BROKER_BYTES_PER_SCORE = 720


def warmup_s(duration_s: float) -> float:
    """Seconds before the memory baseline: a tenth of the run, between 10 s and 300 s.

    The live buffers fill within seconds; the per-second history and lag windows take
    five and ten minutes, so a long run's baseline is taken once they are nearly full.
    """
    return float(min(300.0, max(10.0, 0.1 * duration_s)))


#: Name of the key the bench logs in with (in a key file of its own).
BENCH_KEY_NAME = "bench-dashboard"


def start_dashboard(settings: Settings, port: int, log_path: Path, keys_file: Path) -> subprocess.Popen:
    """Start ``churn dashboard`` on ``127.0.0.1:port`` as a child process logging to ``log_path``.

    Its login is on, against ``keys_file`` (``CHURN_API_KEYS_FILE``).
    """
    from churn_stream.demo import start_cli

    extra = {"CHURN_DASHBOARD_AUTH": "on", "CHURN_API_KEYS_FILE": str(keys_file)}
    if settings.topic_suffix:
        extra["CHURN_TOPIC_SUFFIX"] = settings.topic_suffix
    return start_cli(settings, ["--log-level", "WARNING", "dashboard", "--port", str(port)], log_path, extra)


def log_in(url: str, api_key: str) -> dict[str, str]:
    """Log in to the dashboard at ``url`` with ``api_key`` as a browser does; the session's cookies.

    Raises
    ------
    RuntimeError
        If the login is refused (the key is not named in the message).
    """
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        if page.status_code != 200 or token is None:
            raise RuntimeError(f"no login form at {url}/login (HTTP {page.status_code})")
        r = client.post("/login", data={"csrf_token": token.group(1), "api_key": api_key, "next": "/"})
        if r.status_code != 303:
            raise RuntimeError(f"dashboard login refused (HTTP {r.status_code})")
        return dict(client.cookies)


def wait_dashboard_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll ``/login`` until the dashboard answers.

    Raises
    ------
    RuntimeError
        If the process exits or does not answer within ``timeout_s``.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"churn dashboard exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"churn dashboard did not answer within {timeout_s:.0f} s")


def interval_periods(layout: Any) -> dict[str, int]:
    """``{component id: interval ms}`` of every ``dcc.Interval`` in a ``/_dash-layout`` document."""
    found: dict[str, int] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Interval" and isinstance(node.get("props"), dict):
                props = node["props"]
                if isinstance(props.get("id"), str):
                    found[props["id"]] = int(props.get("interval", 1000))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(layout)
    return found


def _outputs(output: str) -> list[dict[str, str]] | dict[str, str]:
    """``"..a.children...b.figure.."`` (several outputs) or ``"a.children"`` as the renderer sends them."""

    def one(s: str) -> dict[str, str]:
        cid, prop = s.rsplit(".", 1)
        return {"id": cid, "property": prop}

    if output.startswith("..") and output.endswith(".."):
        return [one(s) for s in output[2:-2].split("...")]
    return one(output)


def timer_callbacks(dependencies: list[dict[str, Any]], periods: dict[str, int]) -> list[dict[str, Any]]:
    """The callbacks fired by a ``dcc.Interval``, each with its refresh period and its request template.

    Parameters
    ----------
    dependencies : list of dict
        The app's ``/_dash-dependencies`` document.
    periods : dict
        :func:`interval_periods` of its layout.

    Returns
    -------
    list of dict
        ``name`` (first output id), ``interval_ms``, ``trigger`` (the Interval id) and
        ``body`` (a ``/_dash-update-component`` payload whose input values are filled in per poll).
    """
    found = []
    for dep in dependencies:
        inputs = dep.get("inputs") or []
        trigger = next((i["id"] for i in inputs if i.get("id") in periods and i.get("property") == "n_intervals"), None)
        if trigger is None or dep.get("clientside_function"):
            continue
        outputs = _outputs(dep["output"])
        first = outputs[0] if isinstance(outputs, list) else outputs
        found.append(
            {
                "name": first["id"],
                "interval_ms": periods[trigger],
                "trigger": trigger,
                "body": {
                    "output": dep["output"],
                    "outputs": outputs,
                    "inputs": [{"id": i["id"], "property": i["property"], "value": None} for i in inputs],
                    "changedPropIds": [f"{trigger}.n_intervals"],
                    "state": [
                        {"id": s["id"], "property": s["property"], "value": None} for s in dep.get("state") or []
                    ],
                },
            }
        )
    return found


def _server_ms(headers) -> float | None:  # httpx.Headers
    m = re.search(r"callback;dur=([0-9.]+)", headers.get("server-timing", ""))
    return float(m.group(1)) if m else None


def _count(text: Any) -> int | None:
    try:
        return int(str(text).replace(",", ""))
    except ValueError:
        return None


# ---------------------------------------------------------------------- polling
async def _poll(
    url: str, cookies: dict[str, str], callback: dict[str, Any], tab: str | None, stop_at: float, out: dict[str, Any]
) -> None:
    """Post ``callback`` once per its interval (a new tick each time) until ``stop_at``; record its timings."""
    import httpx

    period = callback["interval_ms"] / 1e3
    body = json.loads(json.dumps(callback["body"]))
    for i in body["inputs"]:
        if i["id"] == "tabs":
            i["value"] = tab
    server_ms, round_trip_ms, statuses, counts = out["server_ms"], out["round_trip_ms"], out["statuses"], out["counts"]
    async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=60) as client:
        n = 0
        t0 = time.perf_counter()
        while True:
            due = t0 + n * period
            if due >= stop_at:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            n += 1
            for i in body["inputs"]:
                if i["id"] == callback["trigger"]:
                    i["value"] = n
            sent = time.perf_counter()
            r = await client.post("/_dash-update-component", json=body)
            round_trip_ms.append((time.perf_counter() - sent) * 1e3)
            statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
            s = _server_ms(r.headers)
            if s is not None:
                server_ms.append(s)
            if r.status_code == 200 and callback["name"] == "kpi-scores":
                counts.append((time.time(), _count(r.json()["response"]["kpi-scores"]["children"])))


async def _tab_for(url: str, cookies: dict[str, str], callback: dict[str, Any]) -> str | None:
    """The ``tabs`` value under which ``callback`` renders (200 rather than 204 PreventUpdate)."""
    import httpx

    body = json.loads(json.dumps(callback["body"]))
    tab_input = next((i for i in body["inputs"] if i["id"] == "tabs"), None)
    if tab_input is None:
        return None
    async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=60) as client:
        for tab in ("live", "models", "quality", "score"):
            tab_input["value"] = tab
            r = await client.post("/_dash-update-component", json=body)
            if r.status_code == 200:
                return tab
    raise RuntimeError(f"callback {callback['name']} rendered under no tab")


async def _sample_rss(pid: int, every_s: float, stop_at: float, samples: list[tuple[float, float]]) -> None:
    import psutil

    proc = psutil.Process(pid)
    t0 = time.perf_counter()
    while time.perf_counter() < stop_at:
        samples.append((time.perf_counter() - t0, proc.memory_info().rss / 2**20))
        await asyncio.sleep(every_s)
    samples.append((time.perf_counter() - t0, proc.memory_info().rss / 2**20))


async def _run(
    settings: Settings, url: str, cookies: dict[str, str], pid: int, rate: float, duration_s: float, sample_s: float
) -> dict[str, Any]:
    import httpx

    async with httpx.AsyncClient(base_url=url, cookies=cookies, timeout=30) as client:
        layout = (await client.get("/_dash-layout")).json()
        deps = (await client.get("/_dash-dependencies")).json()
    callbacks = timer_callbacks(deps, interval_periods(layout))
    if not callbacks:
        raise RuntimeError("the dashboard has no dcc.Interval-driven callbacks to measure")
    tabs = {cb["name"]: await _tab_for(url, cookies, cb) for cb in callbacks}
    rss: list[tuple[float, float]] = []
    feed_counts = {"scores": 0, "alerts": 0, "feed_s": float("nan"), "send_errors": 0}
    polls: dict[str, dict[str, Any]] = {
        cb["name"]: {"server_ms": [], "round_trip_ms": [], "statuses": {}, "counts": []} for cb in callbacks
    }
    start = time.perf_counter()
    stop_at = start + duration_s
    progress_every = max(60.0, duration_s / 20)

    async def progress() -> None:
        while time.perf_counter() < stop_at - 1:
            await asyncio.sleep(min(progress_every, max(0.1, stop_at - time.perf_counter())))
            live = polls.get("kpi-scores", {}).get("counts") or [(0, None)]
            logger.warning(
                "bench dashboard t=%.0fs fed=%d rss_mb=%.1f live_count=%s",
                time.perf_counter() - start,
                feed_counts["scores"],
                rss[-1][1] if rss else float("nan"),
                live[-1][1],
            )

    tasks = [
        asyncio.create_task(_sample_rss(pid, sample_s, stop_at, rss)),
        asyncio.create_task(feed_scores(settings, rate, stop_at, feed_counts)),
        asyncio.create_task(progress()),
        *[
            asyncio.create_task(_poll(url, cookies, cb, tabs[cb["name"]], stop_at, polls[cb["name"]]))
            for cb in callbacks
        ],
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
    return {
        "callbacks": callbacks,
        "tabs": tabs,
        "rss": rss,
        "feed": feed_counts,
        "polls": polls,
        "elapsed_s": time.perf_counter() - start,
    }


def run_bench_dashboard(
    settings: Settings,
    duration_s: float = DURATION_S,
    rate: float = RATE_PER_S,
    json_path: Path | None = None,
    sample_s: float = SAMPLE_S,
) -> dict[str, Any]:
    """Run the soak and print its figures (one JSON object on the last line).

    Parameters
    ----------
    settings : Settings
        The stack (Kafka, MLflow) the dashboard runs against; the topics are created if missing.
    duration_s : float, default 3600
        Seconds of feeding and measuring.
    rate : float, default 2000
        Score records per second produced to ``churn-scores``.
    json_path : path, optional
        Also write the result there.
    sample_s : float, default 5
        Seconds between memory samples.

    Returns
    -------
    dict
        RSS figures (``rss_*``), per-callback durations (``callbacks``), live-count figures
        (``live_*``), the verdicts ``memory_flat``, ``callbacks_within_interval`` and
        ``kept_updating``, and load averages.

    Raises
    ------
    ValueError
        If ``duration_s``, ``rate`` or ``sample_s`` is not positive, or the run is too
        short for a warm-up and a measured part (``duration_s < 20``).
    """
    if not duration_s >= 20:
        raise ValueError(f"duration_s: expected >= 20 s (warm-up plus a measured part), got {duration_s}")
    if not rate > 0:
        raise ValueError(f"rate: expected > 0 events/s, got {rate}")
    if not sample_s > 0:
        raise ValueError(f"sample_s: expected > 0 s, got {sample_s}")
    from churn_stream.bench.api import _free_port, stop_api
    from plumbing.clients import ensure_topics

    ensure_topics(settings)
    # Tansu's memory:// storage keeps every record (no retention, no DeleteRecords): an hour at 2,000/s
    # is ~5 GB of broker memory, measured. Say so before starting.
    broker_gb = rate * duration_s * BROKER_BYTES_PER_SCORE / 1e9
    logger.warning(
        "bench dashboard: %.0f s at %.0f scores/s adds ~%.1f GB to the topics (all of it in memory "
        "on an ephemeral local broker)",
        duration_s,
        rate,
        broker_gb,
    )
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = settings.data_dir / "logs" / "bench-dashboard.log"
    load_before = os.getloadavg()
    from plumbing.api_keys import SCOPE_MODELS_READ, ApiKeyStore

    keys_dir = Path(tempfile.mkdtemp(prefix="bench-dashboard-keys-"))
    try:
        # A key file of its own, so the bench neither needs nor touches the stack's keys.
        _, key = ApiKeyStore(keys_dir / "api_keys.json").create(BENCH_KEY_NAME, [SCOPE_MODELS_READ])
        proc = start_dashboard(settings, port, log, keys_dir / "api_keys.json")
        try:
            wait_dashboard_ready(url, proc)
            cookies = log_in(url, key)
            time.sleep(2.0)  # the consumer thread joins its topics
            run = asyncio.run(_run(settings, url, cookies, proc.pid, rate, duration_s, sample_s))
            if proc.poll() is not None:
                raise RuntimeError(f"churn dashboard exited with code {proc.returncode} during the run; see {log}")
        finally:
            stop_api(proc)
    finally:
        shutil.rmtree(keys_dir, ignore_errors=True)
    load_after = os.getloadavg()

    warm = warmup_s(duration_s)
    memory = rss_summary(run["rss"], warm)
    callbacks = {cb["name"]: callback_summary(cb, run["polls"][cb["name"]]) for cb in run["callbacks"]}
    for name, tab in run["tabs"].items():
        callbacks[name]["tab"] = tab
    updates = updates_summary(run["polls"].get("kpi-scores", {}).get("counts", []))
    result: dict[str, Any] = {
        "duration_s": duration_s,
        "elapsed_s": run["elapsed_s"],
        "target_rate_per_s": rate,
        "scores_produced": run["feed"]["scores"],
        "alerts_produced": run["feed"]["alerts"],
        "failed_produce_batches": run["feed"]["send_errors"],
        # Over the feeder's own time (its producer connects during the first second or two).
        "feed_s": run["feed"]["feed_s"],
        "rate_per_s": run["feed"]["scores"] / run["feed"]["feed_s"],
        **memory,
        "callbacks": callbacks,
        **updates,
        "cpu_count": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
    }
    result["memory_flat"] = memory["rss_growth_after_warmup_mb"] <= FLAT_TOLERANCE_MB
    result["callbacks_within_interval"] = all(c["within_interval"] for c in callbacks.values())
    result["passed"] = result["memory_flat"] and result["callbacks_within_interval"] and updates["kept_updating"]

    print(
        f"fed {result['scores_produced']:,} scores + {result['alerts_produced']:,} alerts in "
        f"{result['feed_s']:.0f} s ({result['rate_per_s']:,.0f}/s, target {rate:,.0f}/s) straight to "
        f"{Topics.SCORES}/{Topics.ALERTS}; {result['failed_produce_batches']} produce batches failed"
    )
    print(
        f"dashboard RSS MB: start {memory['rss_start_mb']:.1f}, after {warm:.0f} s warm-up "
        f"{memory['rss_after_warmup_mb']:.1f}, end {memory['rss_end_mb']:.1f}, max {memory['rss_max_mb']:.1f}; "
        f"growth after warm-up {memory['rss_growth_after_warmup_mb']:+.1f} MB (flat if <= {FLAT_TOLERANCE_MB:g}), "
        f"slope {memory['rss_slope_mb_per_h']:+.1f} MB/h (last half {memory['rss_slope_last_half_mb_per_h']:+.1f} MB/h)"
    )
    print(
        f"{'callback':16}{'tab':>8}{'interval':>10}{'polls':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'rt p99':>9}{'ok':>5}"
    )
    for name, c in callbacks.items():
        print(
            f"{name:16}{c['tab'] or '':>8}{c['interval_ms']:>10}{c['polls']:>7}{c['server_p50_ms']:>9.1f}"
            f"{c['server_p99_ms']:>9.1f}{c['server_max_ms']:>9.1f}{c['round_trip_p99_ms']:>9.1f}"
            f"{'yes' if c['within_interval'] else 'NO':>5}"
        )
    print(
        f"live count {updates['live_count_first']} -> {updates['live_count_last']}, rose at "
        f"{updates['live_count_rises']}/{max(0, updates['live_polls'] - 1)} polls, longest without a rise "
        f"{updates['live_longest_without_rise_s']:.1f} s"
    )
    print(
        f"memory flat: {result['memory_flat']}, callbacks within interval: {result['callbacks_within_interval']}, "
        f"kept updating: {updates['kept_updating']}; load avg {result['load_avg_after']} on "
        f"{result['cpu_count']} CPUs"
    )
    line = json.dumps(result, sort_keys=True)
    print(line)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(line + "\n")
    return result
