"""ASGI middleware of the API: request and response-status counters for ``GET /api/metrics``."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stream_app.api.state import ApiStats


class CountRequests:
    """ASGI middleware counting requests and response statuses (cheap: no body handling).

    Parameters
    ----------
    app : ASGI application
        The application it wraps.
    stats : ApiStats
        Where the counts go (``requests_total``, ``by_status``).
    """

    def __init__(self, app: ASGIApp, stats: ApiStats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        stats = self.stats
        stats.requests_total += 1

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                key = str(message["status"])
                stats.by_status[key] = stats.by_status.get(key, 0) + 1
            await send(message)

        await self.app(scope, receive, counting_send)
