"""The HTTP layer: routes translate bytes ↔ the core (Ranker, FeedbackStore); nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from service.admin import ADMIN_SCHEMA_TYPES, admin_router
from service.concurrency import ConcurrencyLimit
from service.decode import decode_body
from service.hot_path import ErrorHandler, HotPath, HotRoutes
from service.http_body import read_body
from service.inference_protocol import OIP_SCHEMA_TYPES, inference_protocol_router
from service.openapi import body_of, described, install_openapi, responses_of
from service.problems import ProblemError, not_ready, redis_unavailable, unknown_request
from service.responses import json_response, problem_response
from service.runtime import Runtime, open_runtime, request_limits
from service.schema import (
    FeedbackAccepted,
    FeedbackRequest,
    FusionRequest,
    FusionResponse,
    Health,
    RankRequest,
    RankResponse,
    ReadyState,
)
from service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the service for these settings. Start-up (lifespan) loads the bundle and Redis."""
    holder: dict[str, Runtime] = {}
    worker = str(os.getpid())  # names the worker process that answered (replicas × workers)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            holder["runtime"] = runtime
            yield
            holder.pop("runtime", None)

    app = FastAPI(
        title="cascade-serve",
        version="1",
        summary="Online RL policy server for multi-stage recommender systems",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )

    def runtime() -> Runtime:
        if "runtime" not in holder:
            raise not_ready("the service is starting")
        return holder["runtime"]

    async def _problem(request: Request, exc: ProblemError) -> Response:
        if "runtime" in holder:
            endpoint = request.url.path.rsplit("/", 1)[-1]
            holder["runtime"].metrics.requests.labels(endpoint, str(exc.status)).inc()
        return problem_response(exc, request)

    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        response = problem_response(ProblemError(exc.status_code, kind, str(exc.detail), str(exc.detail)), request)
        response.headers.update(exc.headers or {})  # 405 carries Allow (RFC 9110 §15.5.6)
        return response

    async def _redis_down(request: Request, exc: RedisError) -> Response:
        # Routing and models answer from Redis: while it is down they say so (503, retry), never 500.
        log.warning("Redis unavailable on %s: %s", request.url.path, exc)
        response = problem_response(redis_unavailable(str(exc)), request)
        response.headers["retry-after"] = "1"
        return response

    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client hung up mid-upload: nobody is left to answer and nothing failed here, so no
        # traceback and no 500, only a counter. 499 is nginx's "client closed request"; no client sees it.
        if "runtime" in holder:
            holder["runtime"].metrics.client_disconnects.labels(request.url.path.rsplit("/", 1)[-1]).inc()
        return Response(status_code=499)

    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return problem_response(
            ProblemError(500, "internal", "Internal error", "the server failed; see its log"), request
        )

    # What a request's errors answer; the hot path (service/hot_path.py) takes the same handlers, so its
    # refusals are FastAPI's. Anything else reaches _unexpected through Starlette's ServerErrorMiddleware.
    handlers: dict[type[Exception], ErrorHandler] = {
        ProblemError: _problem,  # type: ignore[dict-item]
        StarletteHTTPException: _http_error,  # type: ignore[dict-item]
        RedisError: _redis_down,  # type: ignore[dict-item]
        ClientDisconnect: _client_gone,  # type: ignore[dict-item]
    }
    for kind, handler in {**handlers, Exception: _unexpected}.items():
        app.add_exception_handler(kind, handler)

    # POST /v1/rank and /v1/fusion are answered by HotPath before FastAPI routes anything; these routes
    # document them (OpenAPI) and answer what HotPath passes on (a POST under a root path) the same way.
    hot = HotRoutes(runtime)

    async def routed(request: Request, endpoint: str) -> Response:
        content, media_type = await hot.answer(endpoint, request.scope, request.receive)
        return Response(content, media_type=media_type, headers={"x-cascade-worker": worker})

    @app.post(
        "/v1/rank",
        summary="Rank candidates through the cascade",
        openapi_extra=body_of(RankRequest, msgpack=True),
        responses=responses_of(RankResponse, 200, 400, 404, 408, 413, 415, 422, 503, msgpack=True),
    )
    async def rank(request: Request) -> Response:
        return await routed(request, "rank")

    @app.post(
        "/v1/fusion",
        summary="Fusion weights alone: request-level, or per item when candidates are given",
        openapi_extra=body_of(FusionRequest, msgpack=True),
        responses=responses_of(FusionResponse, 200, 400, 404, 408, 413, 415, 422, 503, msgpack=True),
    )
    async def fusion(request: Request) -> Response:
        return await routed(request, "fusion")

    @app.post(
        "/v1/feedback",
        summary="Report rewards for a served request",
        status_code=202,
        openapi_extra=body_of(FeedbackRequest, msgpack=True),
        responses=described(
            responses_of(FeedbackAccepted, 202, 200, 400, 404, 408, 413, 415, 422, 503),
            s202="Stored: status accepted (within the reward window) or late (after it; not joined)",
            s200="This event was stored before (status duplicate); nothing new is stored",
            s404="No decision with this request_id is logged; retry after Retry-After seconds if just served",
        ),
    )
    async def feedback(request: Request) -> Response:
        rt = runtime()
        body = await read_body(request, rt.settings.max_body_bytes, chunk_timeout=rt.settings.body_read_timeout_seconds)
        decoded = request_limits(rt.settings).feedback(decode_body(body, FeedbackRequest))
        try:
            outcome = await rt.feedback.append(decoded)
            if outcome == "unknown_request" and await rt.decision_log.logged_soon(decoded.request_id, 1.0):
                outcome = await rt.feedback.append(decoded)  # served here a moment ago: its record is in now
        except (RedisError, OSError) as exc:
            raise ProblemError(503, "feedback-unavailable", "Feedback store unavailable", str(exc)) from exc
        rt.metrics.feedback.labels(outcome).inc()
        if outcome == "unknown_request":
            # Decision records reach Redis asynchronously: feedback that reaches another worker (or replica)
            # the instant a response arrives may beat its record by milliseconds: say when to retry.
            rt.metrics.requests.labels("feedback", "404").inc()
            response = problem_response(unknown_request(decoded.request_id), request)
            response.headers["retry-after"] = "1"
            return response
        status = 200 if outcome == "duplicate" else 202
        rt.metrics.requests.labels("feedback", str(status)).inc()
        answer = FeedbackAccepted(request_id=decoded.request_id, duplicate=outcome == "duplicate", status=outcome)
        return json_response(answer, status=status)

    @app.get("/healthz", summary="The process is alive", responses=responses_of(Health, 200))
    async def healthz() -> Response:
        return json_response(Health(status="ok"))

    @app.get("/readyz", summary="A bundle is loaded and warm", responses=responses_of(ReadyState, 200, 503))
    async def readyz() -> Response:
        rt = runtime()
        policy = rt.settings.policy
        serving = rt.registry.get(policy)
        if serving is None:
            raise not_ready(f"policy '{policy}' has no loaded bundle: {rt.registry.error(policy)}")
        try:
            await asyncio.wait_for(rt.redis.ping(), timeout=0.5)
            redis_state = "ok"
        except (RedisError, OSError, TimeoutError) as exc:
            redis_state = f"unreachable: {type(exc).__name__}"
        return json_response(
            ReadyState(
                ready=True,
                policy=policy,
                version=serving.active.version,
                redis=redis_state,
                decision_log=rt.decision_log.state(),
                item_table=rt.items.version,
                item_table_error=rt.items.error,
            )
        )

    @app.get(
        "/metrics",
        summary="Prometheus metrics of this worker",
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus text exposition format"}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(runtime().metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def refused(path: str) -> None:
        if "runtime" in holder:
            holder["runtime"].metrics.requests.labels(path.rsplit("/", 1)[-1], "503").inc()

    # Added first, so inside the limit: a hot request counts against it like any other.
    app.add_middleware(HotPath, routes=hot, worker=worker, handlers=handlers)
    app.add_middleware(ConcurrencyLimit, limit=settings.max_concurrency, on_refused=refused)
    app.include_router(admin_router(runtime))
    app.include_router(inference_protocol_router(runtime))
    schema_types = [RankRequest, RankResponse, FusionRequest, FusionResponse, FeedbackRequest, FeedbackAccepted]
    install_openapi(app, [*schema_types, *ADMIN_SCHEMA_TYPES, *OIP_SCHEMA_TYPES, ReadyState, Health])
    return app
