"""The HTTP layer: routes translate bytes ↔ the core (Ranker, FeedbackStore); nothing else lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from export.store import StoreError
from service.bundle import BundleError
from service.decision_log import DecisionLog
from service.decode import decode_json
from service.embedded_redis import EmbeddedRedis
from service.exploration import NoiseSource
from service.feedback import FeedbackStore
from service.http_body import read_json_body
from service.metrics import Metrics
from service.openapi import body_of, install_openapi, responses_of
from service.problems import ProblemError, not_ready, problem_response
from service.ranker import Ranker
from service.registry import Registry
from service.schema import FeedbackAccepted, FeedbackRequest, Health, RankRequest, RankResponse, ReadyState
from service.settings import Settings

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


@dataclass
class Runtime:
    """What a running app holds: built at start-up, released at shutdown."""

    settings: Settings
    metrics: Metrics
    registry: Registry
    redis: Redis
    decision_log: DecisionLog
    ranker: Ranker
    feedback: FeedbackStore


def _json(value: object, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


@contextlib.asynccontextmanager
async def _runtime(settings: Settings) -> AsyncIterator[Runtime]:
    embedded = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = await asyncio.to_thread(EmbeddedRedis, settings.embedded_redis_dir)
        redis_url = embedded.url
    redis = Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
    metrics = Metrics()
    registry = Registry(settings.store, settings.ort_intra_op_threads)
    try:
        await asyncio.to_thread(registry.load_active, settings.policy)
    except (StoreError, BundleError) as exc:
        # Start anyway: /healthz answers, /readyz says why it is not ready.
        log.error("policy %s not loaded: %s", settings.policy, exc)
    decision_log = DecisionLog(
        redis,
        settings.decision_stream,
        metrics,
        capacity=settings.log_queue_size,
        batch_size=settings.log_batch_size,
        retry_seconds=settings.log_retry_seconds,
    )
    decision_log.start()
    ranker = Ranker(
        registry,
        decision_log,
        NoiseSource(settings.exploration_seed),
        metrics,
        settings.policy,
        settings.log_candidate_features,
    )
    feedback = FeedbackStore(redis, settings.feedback_stream, settings.feedback_dedupe_seconds)
    try:
        yield Runtime(settings, metrics, registry, redis, decision_log, ranker, feedback)
    finally:
        await decision_log.stop(settings.log_flush_seconds)
        await redis.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def create_app(settings: Settings) -> FastAPI:
    """Build the service for these settings. Start-up (lifespan) loads the bundle and Redis."""
    holder: dict[str, Runtime] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with _runtime(settings) as runtime:
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

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        if "runtime" in holder:
            endpoint = request.url.path.rsplit("/", 1)[-1]
            holder["runtime"].metrics.requests.labels(endpoint, str(exc.status)).inc()
        return problem_response(exc, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(
            ProblemError(exc.status_code, kind, str(exc.detail), str(exc.detail)), request
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return problem_response(
            ProblemError(500, "internal", "Internal error", "the server failed; see its log"), request
        )

    @app.post(
        "/v1/rank",
        summary="Rank candidates through the cascade",
        openapi_extra=body_of(RankRequest),
        responses=responses_of(RankResponse, 200, 400, 404, 413, 415, 422, 503),
    )
    async def rank(request: Request) -> Response:
        started = time.perf_counter()
        rt = runtime()
        body = await read_json_body(request, rt.settings.max_body_bytes)
        decoded = decode_json(body, RankRequest)
        decode_ms = (time.perf_counter() - started) * 1000
        result = rt.ranker.rank(decoded, started, decode_ms)
        rt.metrics.latency.labels("rank", result.policy, result.version).observe(
            time.perf_counter() - started
        )
        rt.metrics.requests.labels("rank", "200").inc()
        return _json(result)

    @app.post(
        "/v1/feedback",
        summary="Report rewards for a served request",
        status_code=202,
        openapi_extra=body_of(FeedbackRequest),
        responses=responses_of(FeedbackAccepted, 202, 400, 413, 415, 422, 503),
    )
    async def feedback(request: Request) -> Response:
        rt = runtime()
        body = await read_json_body(request, rt.settings.max_body_bytes)
        decoded = decode_json(body, FeedbackRequest)
        try:
            stored = await rt.feedback.append(decoded)
        except (RedisError, OSError) as exc:
            raise ProblemError(503, "feedback-unavailable", "Feedback store unavailable", str(exc)) from exc
        rt.metrics.requests.labels("feedback", "202").inc()
        return _json(FeedbackAccepted(request_id=decoded.request_id, duplicate=not stored), status=202)

    @app.get("/healthz", summary="The process is alive", responses=responses_of(Health, 200))
    async def healthz() -> Response:
        return _json(Health(status="ok"))

    @app.get("/readyz", summary="A bundle is loaded and warm", responses=responses_of(ReadyState, 200, 503))
    async def readyz() -> Response:
        rt = runtime()
        policy = rt.settings.policy
        bundle = rt.registry.get(policy)
        if bundle is None:
            raise not_ready(f"policy '{policy}' has no loaded bundle: {rt.registry.error(policy)}")
        try:
            await asyncio.wait_for(rt.redis.ping(), timeout=0.5)
            redis_state = "ok"
        except (RedisError, OSError, TimeoutError) as exc:
            redis_state = f"unreachable: {type(exc).__name__}"
        return _json(
            ReadyState(
                ready=True,
                policy=policy,
                version=bundle.version,
                redis=redis_state,
                decision_log=rt.decision_log.state(),
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

    install_openapi(app, [RankRequest, RankResponse, FeedbackRequest, FeedbackAccepted, ReadyState, Health])
    return app
