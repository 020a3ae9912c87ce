"""A per-worker limit on requests in progress: past it, 503 problem+json with Retry-After at once.

Without it a burst queues without bound in the worker (every queued request holds its body in memory
and waits behind the others, so all of them time out together). Refusing early lets the client or the
load balancer retry elsewhere. Probes (/healthz, /readyz, /metrics) are never refused: a busy worker is
not a dead one.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from starlette.types import ASGIApp, Receive, Scope, Send

from service.problems import PROBLEM_MEDIA_TYPE, ProblemError

_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class ConcurrencyLimit:
    """ASGI middleware: at most `limit` HTTP requests of this worker in progress at once."""

    def __init__(self, app: ASGIApp, limit: int, on_refused: Callable[[str], None] | None = None) -> None:
        self._app = app
        self._limit = limit
        self._on_refused = on_refused
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _PROBES:
            await self._app(scope, receive, send)
            return
        if self.in_progress >= self._limit:
            await self._refuse(scope, send)
            return
        self.in_progress += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.in_progress -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if self._on_refused is not None:
            self._on_refused(scope["path"])
        problem = ProblemError(
            503, "overloaded", "Too many requests in progress", f"this worker is serving {self._limit} requests"
        ).to_problem(scope["path"])
        body = msgspec.json.encode(problem)
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})
