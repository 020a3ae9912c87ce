"""What a running app holds, built at start-up and released at shutdown, in dependency order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from redis.asyncio import Redis

from contracts.versions import POLICY_NAME
from service.decision_log import DecisionLog, LogWindow, SpoolSettings
from service.embedded_redis import EmbeddedRedis
from service.exploration import NoiseSource
from service.feedback import FeedbackStore
from service.item_catalog import ItemCatalog
from service.limits import RequestLimits
from service.metrics import Metrics
from service.ranker import Ranker
from service.redis_connection import connect as connect_redis
from service.registry import Registry
from service.routing import RoutingStore
from service.routing_watcher import RoutingWatcher
from service.settings import Settings
from service.shard_writer import StreamTrim
from service.signing import load_trust

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The service's parts for one app instance (one worker)."""

    settings: Settings
    metrics: Metrics
    registry: Registry
    redis: Redis
    routing: RoutingStore
    decision_log: DecisionLog
    items: ItemCatalog
    ranker: Ranker
    feedback: FeedbackStore
    compute: ThreadPoolExecutor  # decode + cascade of rank and fusion requests, off the event loop
    watcher: RoutingWatcher | None = None  # follows routing; admin asks it to apply a change at once


def request_limits(settings: Settings) -> RequestLimits:
    """The size limits this deployment enforces on request bodies."""
    return RequestLimits(settings.max_candidates, settings.max_k, settings.max_reward_keys, settings.max_name_length)


def served_policies(settings: Settings) -> list[str]:
    """The default policy plus every policy with a folder in the store (re-read: new ones are followed)."""
    on_disk = sorted(p.name for p in settings.store.iterdir() if p.is_dir()) if settings.store.is_dir() else []
    return [settings.policy, *(name for name in on_disk if name != settings.policy and POLICY_NAME.fullmatch(name))]


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Start Redis (embedded if no URL), the registry and its watcher, the decision log; stop them after."""
    embedded = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = await asyncio.to_thread(EmbeddedRedis, settings.embedded_redis_dir)
        redis_url = embedded.url
    redis = connect_redis(redis_url, settings.redis_cluster)
    metrics = Metrics()
    trust = load_trust(settings.signing_public_key, settings.require_signature, settings.store)
    registry = Registry(settings.store, settings.ort_intra_op_threads, metrics, trust)
    items = ItemCatalog(settings.store)
    routing = RoutingStore(redis, settings.store, settings.routing_namespace)
    watcher = RoutingWatcher(
        routing, redis, registry, lambda: served_policies(settings), metrics, settings.routing_poll_seconds, items
    )
    # Start anyway if nothing loads: /healthz answers, /readyz says why it is not ready.
    await watcher.start()
    decision_log = DecisionLog(
        redis,
        settings.decision_stream,
        metrics,
        SpoolSettings(settings.log_spool_dir, settings.log_spool_max_bytes, settings.log_spool_fsync),
        window=LogWindow(settings.log_window_records, settings.log_window_ms),
        orphan_seconds=settings.log_orphan_seconds,
        linger_seconds=settings.log_linger_ms / 1000,
        batch_size=settings.log_batch_size,
        retry_seconds=settings.log_retry_seconds,
        index_seconds=settings.decision_index_seconds,
        trim=None if settings.log_trim == "off" else StreamTrim(settings.log_trim, settings.log_trim_threshold),
    )
    decision_log.start()
    ranker = Ranker(
        registry,
        decision_log,
        NoiseSource(settings.exploration_seed),
        metrics,
        settings.policy,
        items,
        log_candidate_features=settings.log_candidate_features,
        log_decisions=settings.log_decisions,
        limits=request_limits(settings),
    )
    feedback = FeedbackStore(
        redis,
        settings.feedback_stream,
        settings.feedback_dedupe_seconds,
        decision_stream=settings.decision_stream,
        reward_window_seconds=settings.reward_window_seconds,
        index_seconds=settings.decision_index_seconds,
    )
    compute = ThreadPoolExecutor(settings.compute_threads, thread_name_prefix="cascade-compute")
    try:
        yield Runtime(
            settings, metrics, registry, redis, routing, decision_log, items, ranker, feedback, compute, watcher
        )
    finally:
        compute.shutdown(wait=True)  # requests still computing finish (and log) before the log stops
        await watcher.stop()
        await decision_log.stop(settings.log_flush_seconds)
        await redis.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
