"""The floor of ``churn bench api``: the API's HTTP stack answering ``POST /api/predict`` without scoring.

Served exactly as :func:`stream_app.api.app.run_api` serves the API (uvicorn, uvloop,
httptools, no access log) by a Starlette app whose only work is to read the body and
answer a fixed JSON document: what is left of a request's latency when validation,
authentication and scoring cost nothing. ``churn bench api`` loads it with the same
open-loop client in the same run, so the client's own overhead and the machine's noise
show beside the API's figures. Run as ``python -m churn_stream.bench.bare_api --port N``.
"""

from __future__ import annotations

import argparse
import importlib.util

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

#: The answer to every predict request (a prediction's size does not matter on loopback).
ANSWER = b'{"predictions":[],"classifier":null,"value_model":null}'


async def _predict(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


async def _health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def create_bare_app() -> Starlette:
    """A Starlette app with ``POST /api/predict`` (reads the body, fixed answer) and ``GET /health``."""
    return Starlette(routes=[Route("/api/predict", _predict, methods=["POST"]), Route("/health", _health)])


def main(argv: list[str] | None = None) -> None:
    """Serve :func:`create_bare_app` on ``127.0.0.1:--port`` until terminated."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    uvicorn.run(
        create_bare_app(),
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
        loop=loop,
        http="httptools",
    )


if __name__ == "__main__":
    main()
