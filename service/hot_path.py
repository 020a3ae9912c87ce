"""POST /v1/rank and /v1/fusion answered by a pure-ASGI middleware, ahead of FastAPI's router.

At N = 100 the cascade itself takes ≈ 0.2 ms, and what Starlette and FastAPI do around it (matching
the path against every route's regex, a Request and its Headers, solving the route's dependencies, the
exception middleware's wrapping of `send`, a Response object) was 11–25 % of the worker's GIL time in the
profile (BENCHMARKS.md). Here the two hot routes are matched by exact path, their headers read once,
their body read with the same limits (service/http_body.py), the same Ranker call made and the answer
sent as two ASGI messages. Everything else, including other methods on these paths, goes on to FastAPI,
whose documented routes stay for OpenAPI (and answer through the same HotRoutes when a POST reaches them,
e.g. under a root path, which Starlette's router strips and this exact match does not).

Errors take the app's own exception handlers (handed in), so a refusal here is byte for byte the
refusal FastAPI would send; an unexpected exception propagates to Starlette's ServerErrorMiddleware,
outside this one, as it does from a route (500 problem+json, then the traceback in the server's log).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.http_body import accepts_msgpack, asgi_chunks, read_chunks
from service.responses import encoded
from service.runtime import Runtime
from service.schema import FusionResponse, RankResponse

Served = RankResponse | FusionResponse
ErrorHandler = Callable[[Request, Exception], Awaitable[Response]]

ENDPOINTS = {"/v1/rank": "rank", "/v1/fusion": "fusion"}  # path → endpoint label of the metrics


class HotRoutes:
    """The rank and fusion routes themselves: a body off the ASGI receive channel → the answer's bytes."""

    def __init__(self, runtime: Callable[[], Runtime]) -> None:
        self._runtime = runtime  # raises the not-ready ProblemError while the service starts

    async def answer(self, endpoint: str, scope: Scope, receive: Receive) -> tuple[bytes, str]:
        """Read the body, run the ranker off the event loop; the answer's bytes in the codec the client
        accepts, and their media type. Refusals are raised as the app's errors (ProblemError, ...)."""
        started = time.perf_counter()
        rt = self._runtime()
        content_type = content_length = accept = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's Headers.get answers
            if name == b"content-type":
                content_type = content_type or value.decode("latin-1")
            elif name == b"content-length":
                content_length = content_length or value.decode("latin-1")
            elif name == b"accept":
                accept = accept or value.decode("latin-1")
        settings = rt.settings
        rt.metrics.in_flight.inc()
        try:
            body = await read_chunks(
                content_type,
                content_length,
                asgi_chunks(receive),
                settings.max_body_bytes,
                chunk_timeout=settings.body_read_timeout_seconds,
            )
            # Decoding and the cascade take milliseconds of CPU: run them off the event loop so health probes
            # and feedback are not queued behind them (onnxruntime releases the GIL). A plain executor, not
            # Starlette's anyio threadpool: its per-call overhead measured higher here. Serving small requests
            # on the loop instead measured no cheaper per request (loadtest/bench/ab.py --simultaneous).
            handle = rt.ranker.rank_body if endpoint == "rank" else rt.ranker.fusion_body
            result: Served = await asyncio.get_running_loop().run_in_executor(rt.compute, handle, body, started)
        finally:
            rt.metrics.in_flight.dec()
        content, media_type = encoded(result, msgpack=accepts_msgpack(accept))
        rt.metrics.observe(endpoint, result.policy, result.version, result.timings, time.perf_counter() - started)
        return content, media_type


class HotPath:
    """ASGI middleware: serves POST on ENDPOINTS through `routes`, passes every other request to `app`."""

    def __init__(
        self,
        app: ASGIApp,
        routes: HotRoutes,
        worker: str,
        handlers: Mapping[type[Exception], ErrorHandler],
    ) -> None:
        self._app = app
        self._routes = routes
        self._worker = worker.encode()
        self._handlers = dict(handlers)
        self._handled = tuple(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = ENDPOINTS.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if endpoint is None:
            await self._app(scope, receive, send)
            return
        try:
            content, media_type = await self._routes.answer(endpoint, scope, receive)
        except self._handled as exc:
            response = await self._handler_for(exc)(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", media_type.encode()),
            (b"x-cascade-worker", self._worker),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _handler_for(self, exc: Exception) -> ErrorHandler:
        """The handler of the nearest class in the exception's MRO, as Starlette looks it up."""
        return next(self._handlers[kind] for kind in type(exc).__mro__ if kind in self._handlers)
