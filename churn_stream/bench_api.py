"""``churn bench api``: single-customer prediction latency at a fixed request rate.

Starts ``churn api`` as a child process on a free loopback port against the configured
stack (it loads the registry's champion), sends one-customer ``POST /api/predict``
requests on a fixed schedule (open loop: request *i* is due at ``t0 + i / rate``, and
its latency counts from that due time, so a slow server cannot hide queueing by
slowing the client down), and measures, in the same run, one scikit-learn
``Pipeline.predict_proba`` call on the same row (OneHotEncoder + StandardScaler +
LogisticRegression fitted on the Telco training split) as a reference point.

Targets: p50 < 2 ms and p99 < 10 ms at 500 requests/s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from churn_stream.settings import Settings

logger = logging.getLogger(__name__)

#: Requests per second and seconds of the measured run.
RATE_PER_S = 500
DURATION_S = 10.0
#: Requests sent one at a time before measuring (connection set-up, caches, allocator).
WARMUP_REQUESTS = 320
#: Client connections (each its own keep-alive connection).
CONNECTIONS = 16
#: Targets of the issue.
P50_TARGET_MS = 2.0
P99_TARGET_MS = 10.0


def _free_port() -> int:
    from churn_stream.stack import LocalStack

    return LocalStack.free_ports(1)[0]


def start_api(settings: Settings, port: int, log_path: Path) -> subprocess.Popen:
    """Start ``churn api`` on ``127.0.0.1:port`` as a child process logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "CHURN_DATA_DIR": str(settings.data_dir),
    })
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "churn_stream.cli", "--log-level", "WARNING", "api",
                                 "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_api_ready(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll ``/health`` until a champion is in service.

    Raises
    ------
    RuntimeError
        If the process exits or no champion is loaded within ``timeout_s``.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"churn api exited with code {proc.returncode}")
        try:
            r = httpx.get(f"{url}/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"churn api had no champion in service after {timeout_s:.0f} s")


def stop_api(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the child started by :func:`start_api`, SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _fixed_rate(url: str, body: bytes, rate: float, duration_s: float,
                      connections: int = CONNECTIONS) -> dict[str, Any]:
    """Send ``rate * duration_s`` requests on a fixed schedule; latencies from each due time.

    A scheduler puts each request on a queue at its due time; ``connections`` senders,
    each with its own single keep-alive connection, take them in order. (One shared
    httpx pool with thousands of waiting requests spends its time rescanning the
    queue, which would measure the client, not the server.)
    """
    import httpx

    n = int(rate * duration_s)
    due_latency = np.full(n, np.nan)
    service_latency = np.full(n, np.nan)
    statuses: dict[int, int] = {}
    headers = {"content-type": "application/json"}
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    clients = [httpx.AsyncClient(base_url=url, timeout=30,
                                 limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
               for _ in range(connections)]
    try:
        for client in clients:  # open every connection and warm the server up
            for _ in range(max(1, WARMUP_REQUESTS // connections)):
                r = await client.post("/api/predict", content=body, headers=headers)
                r.raise_for_status()

        async def sender(client: httpx.AsyncClient) -> None:
            while (item := await queue.get()) is not None:
                i, due = item
                sent = time.perf_counter()
                r = await client.post("/api/predict", content=body, headers=headers)
                done = time.perf_counter()
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                due_latency[i] = done - due
                service_latency[i] = done - sent

        senders = [asyncio.create_task(sender(c)) for c in clients]
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((i, due))
        for _ in senders:
            queue.put_nowait(None)
        await asyncio.gather(*senders)
        elapsed = time.perf_counter() - t0
    finally:
        for client in clients:
            await client.aclose()
    return {"n": n, "elapsed_s": elapsed, "due_latency_s": due_latency, "service_latency_s": service_latency,
            "statuses": statuses}


def _run_loop(coro):
    """Run ``coro`` on uvloop when installed (the client's own overhead is part of every latency)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def sklearn_reference(n_calls: int = 1000) -> dict[str, Any]:
    """Fit OneHotEncoder + StandardScaler + LogisticRegression on the Telco training split; time one-row calls.

    Returns
    -------
    dict
        ``sklearn_predict_proba_ms`` (median of ``n_calls`` one-row calls), its p99, and the row used.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from batch.cycle import DEFAULT_SOURCES
    from batch.features import stratified_split
    from batch.ingest import read_source_csv
    from schemas.profiles import TELCO

    frame = read_source_csv(DEFAULT_SOURCES["telco"], TELCO)
    y = frame[TELCO.classification_target].to_numpy().astype(np.int64)
    train_idx, _ = stratified_split(y, 0.2, 42)  # the batch job's training split
    X = frame[list(TELCO.features)].copy()
    for c in TELCO.numeric_features:
        X[c] = X[c].astype(np.float64)
    pipe = Pipeline([
        ("features", ColumnTransformer([
            ("num", StandardScaler(), list(TELCO.numeric_features)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(TELCO.categorical_features)),
        ])),
        ("model", LogisticRegression(max_iter=1000)),
    ])
    pipe.fit(X.iloc[train_idx], y[train_idx])
    row = X.iloc[[0]]
    for _ in range(50):
        pipe.predict_proba(row)
    times = np.empty(n_calls)
    for i in range(n_calls):
        t = time.perf_counter()
        pipe.predict_proba(row)
        times[i] = time.perf_counter() - t
    return {
        "sklearn_predict_proba_ms": float(np.median(times) * 1e3),
        "sklearn_predict_proba_p99_ms": float(np.percentile(times, 99) * 1e3),
        "sklearn_probability": float(pipe.predict_proba(row)[0, 1]),
    }


def run_bench_api(settings: Settings, json_path: Path | None = None, rate: float = RATE_PER_S,
                  duration_s: float = DURATION_S) -> dict[str, Any]:
    """Run the benchmark and print its figures (one JSON object on the last line).

    Parameters
    ----------
    settings : Settings
        The stack to serve from; its registry must hold a ``churn-classifier@champion``.
    json_path : path, optional
        Also write the result there.
    rate : float, default 500
        Requests per second.
    duration_s : float, default 10
        Seconds of the measured run.

    Returns
    -------
    dict
        ``rps``, ``p50_ms``, ``p99_ms`` (from each request's due time), ``service_p50_ms``,
        ``service_p99_ms`` (from its actual send), the server's own latency summary,
        ``sklearn_predict_proba_ms``, load averages and whether the targets were met.
    """
    import httpx

    from churn_stream.clients import csv_to_customer_events
    from batch.cycle import DEFAULT_SOURCES

    doc = orjson.loads(csv_to_customer_events(DEFAULT_SOURCES["telco"], limit=1)[0][1])
    doc.pop("event_id")
    doc.pop("event_time")
    body = orjson.dumps(doc)

    from mlflow.exceptions import MlflowException

    from churn_stream.clients import make_tracker

    try:
        make_tracker(settings).get_model_version_by_alias("churn-classifier", "champion")
    except MlflowException:
        raise RuntimeError("no churn-classifier@champion in the registry: run `churn batch run` first") from None

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = settings.data_dir / "logs" / "bench-api.log"
    load_before = os.getloadavg()
    proc = start_api(settings, port, log)
    try:
        health = wait_api_ready(url, proc)
        run = _run_loop(_fixed_rate(url, body, rate, duration_s))
        server = httpx.get(f"{url}/api/metrics", timeout=10).json()["live"]["latency"]
    finally:
        stop_api(proc)
    reference = sklearn_reference()
    load_after = os.getloadavg()

    due_ms = run["due_latency_s"] * 1e3
    service_ms = run["service_latency_s"] * 1e3
    ok = run["statuses"].get(200, 0)
    result: dict[str, Any] = {
        "requests": run["n"],
        "ok_200": ok,
        "statuses": {str(k): v for k, v in sorted(run["statuses"].items())},
        "target_rps": rate,
        "rps": ok / run["elapsed_s"],
        "p50_ms": float(np.percentile(due_ms, 50)),
        "p99_ms": float(np.percentile(due_ms, 99)),
        "max_ms": float(due_ms.max()),
        "service_p50_ms": float(np.percentile(service_ms, 50)),
        "service_p99_ms": float(np.percentile(service_ms, 99)),
        "server_side_p50_ms": server["p50_ms"],
        "server_side_p99_ms": server["p99_ms"],
        **reference,
        "model_name": health["model_name"],
        "model_version": health["model_version"],
        "cpu_count": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in load_after],
    }
    result["p50_target_met"] = result["p50_ms"] < P50_TARGET_MS
    result["p99_target_met"] = result["p99_ms"] < P99_TARGET_MS
    print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'API, from due time':24}{result['p50_ms']:>10.3f}{result['p99_ms']:>10.3f}")
    print(f"{'API, from send':24}{result['service_p50_ms']:>10.3f}{result['service_p99_ms']:>10.3f}")
    print(f"{'API, server side':24}{server['p50_ms']:>10.3f}{server['p99_ms']:>10.3f}")
    print(f"{'sklearn predict_proba':24}{reference['sklearn_predict_proba_ms']:>10.3f}"
          f"{reference['sklearn_predict_proba_p99_ms']:>10.3f}")
    print(f"rps {result['rps']:.1f} (target {rate}), {ok}/{run['n']} ok, load avg {result['load_avg_after']} "
          f"on {result['cpu_count']} CPUs")
    line = json.dumps(result, sort_keys=True)
    print(line)
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(line + "\n")
    return result
