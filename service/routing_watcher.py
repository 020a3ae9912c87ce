"""Keeps this worker's Registry in step with the routing state in Redis.

Listens on the routing channel for an immediate reaction and polls each policy's revision as a
safety net, so a worker that missed a message (a reconnect, a restart of Redis) still converges
within one poll interval. Loads run in a thread: the event loop keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts.store import StoreError, active_version
from service.bundle import BundleError
from service.item_catalog import ItemCatalog
from service.metrics import Metrics
from service.registry import Registry
from service.routing import RoutingStore

log = logging.getLogger(__name__)


class RoutingWatcher:
    """Background task: routing changes in Redis → verified swaps in the registry."""

    def __init__(
        self,
        routing: RoutingStore,
        redis: Redis,
        registry: Registry,
        policies: list[str],
        metrics: Metrics,
        poll_seconds: float,
        items: ItemCatalog | None = None,
    ) -> None:
        self._items = items
        self._redis = redis
        self._routing = routing
        self._registry = registry
        self._policies = policies
        self._metrics = metrics
        self._poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Seed routing from the store if Redis has none, load it, then watch for changes."""
        try:
            for policy in self._policies:
                with contextlib.suppress(StoreError):
                    await self._routing.bootstrap(policy, active_version(self._registry.store, policy))
            if self._items is not None:
                await self._items.bootstrap(self._routing)
            await self.refresh()
        except (RedisError, OSError) as exc:
            # Serve what the store says until Redis answers; the watcher then converges on Redis.
            log.error("routing: Redis unavailable at start-up, serving the store's ACTIVE versions: %s", exc)
            for policy in self._policies:
                with contextlib.suppress(StoreError, BundleError):
                    await asyncio.to_thread(self._registry.load_active, policy)
            if self._items is not None:
                await asyncio.to_thread(self._items.load_store_active)
        self._task = asyncio.create_task(self._run(), name="routing-watcher")

    async def stop(self) -> None:
        """Stop watching. The flag ends the loop even if redis-py swallows the cancellation mid-read."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=2 * self._poll_seconds + 1)

    async def refresh(self) -> None:
        """Apply every policy whose revision differs from what this worker serves."""
        async with self._lock:  # one swap at a time: versions served by a worker only move forward
            if self._items is not None:
                await self._items.refresh(self._routing)
            for policy in self._policies:
                state = await self._routing.get(policy)
                current = self._registry.get(policy)
                if state.active is None:
                    if current is None:
                        self._registry.mark_unavailable(
                            policy, f"policy '{policy}' has no active version (no routing in Redis, no ACTIVE in store)"
                        )
                    continue
                if current is not None and current.revision == state.revision:
                    continue
                try:
                    serving = await asyncio.to_thread(self._registry.apply, policy, state)
                except (StoreError, BundleError):
                    self._metrics.swap_failures.labels(policy).inc()
                    continue
                self._metrics.swaps.labels(policy).inc()
                self._metrics.serving_revision.labels(policy).set(serving.revision)
                log.info("policy %s now serves %s (revision %d)", policy, serving.versions(), serving.revision)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._routing.channel)
                    while not self._stopping.is_set():
                        await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._poll_seconds)
                        await self.refresh()  # on a message, or after a quiet poll interval
            except (RedisError, OSError) as exc:
                log.warning("routing watcher: Redis unavailable, retrying: %s", exc)
                await asyncio.sleep(self._poll_seconds)
