"""The floor ``churn bench api`` measures beside the API: a bare Starlette endpoint, served as the API is."""

from __future__ import annotations

import asyncio

import httpx

from churn_stream.bench.bare_api import ANSWER, create_bare_app


def test_bare_app_reads_the_body_and_answers_a_fixed_document():
    async def go() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=create_bare_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://bare") as c:
            return await c.post("/api/predict", json={"customer_id": "x"}), await c.get("/health")

    predict, health = asyncio.run(go())
    assert predict.status_code == 200 and predict.content == ANSWER
    assert predict.headers["content-type"] == "application/json"
    assert health.status_code == 200


def test_bare_server_runs_as_a_module(tmp_path):
    import subprocess
    import sys
    import time

    from churn_stream.stack import LocalStack

    port = LocalStack.free_ports(1)[0]
    proc = subprocess.Popen([sys.executable, "-m", "churn_stream.bench.bare_api", "--port", str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/api/predict", content=b"{}", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert r.status_code == 200 and r.content == ANSWER
    finally:
        proc.terminate()
        proc.wait(timeout=10)
