"""Keeps this worker's Registry in step with the routing state in Redis, and says what it serves.

Listens on the routing channel for an immediate reaction and polls every policy's state as a
safety net, so a worker that missed a message (a reconnect, a restart of Redis) still converges
within one poll interval. Any difference between what routing names and what this worker serves is
applied, whatever the revision numbers say. The policies followed are re-read from the store on
every pass, so a policy published after start-up is served as soon as routing names it. Loads run
in a thread: the event loop keeps serving meanwhile.

After each pass the worker writes what it serves to the workers hash in Redis (a heartbeat), which
lets an activation wait until every live worker serves the new version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from contracts.routing import RoutingState
from contracts.store import StoreError
from service.bundle import BundleError
from service.item_catalog import ItemCatalog
from service.metrics import Metrics
from service.registry import Registry
from service.routing import RoutingStore

log = logging.getLogger(__name__)

_RETRY_REFUSED_S = 30.0
_FORGET_WORKERS_S = 3600.0  # heartbeats older than this are removed at start-up (workers long gone)


class RoutingWatcher:
    """Background task: routing changes in Redis → verified swaps in the registry."""

    def __init__(
        self,
        routing: RoutingStore,
        redis: Redis,
        registry: Registry,
        policies: Callable[[], list[str]],
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
        # A routing state this worker failed to load, and when: retried after _RETRY_REFUSED_S, not every poll.
        self._refused: dict[str, tuple[tuple[str | None, str | None, float, str | None], float]] = {}
        # host:pid names the worker process (the x-cascade-worker header); the suffix tells apart app
        # instances sharing one process (tests run several).
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    async def start(self) -> None:
        """Load what routing names (restoring Redis from the store if it lost it), then watch for changes."""
        try:
            await self._forget_dead_workers()
            await self.refresh()
        except (RedisError, OSError) as exc:
            # Serve the store's durable routing until Redis answers; the watcher then converges on Redis.
            log.error("routing: Redis unavailable at start-up, serving the store's durable routing: %s", exc)
            for policy in self._policies():
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
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._redis.hdel(self._routing.workers, self.worker_id), timeout=1.0)

    async def refresh(self) -> None:
        """Apply every policy whose routing names other bundles than this worker serves."""
        async with self._lock:  # one swap at a time: versions served by a worker only move forward
            if self._items is not None:
                await self._items.refresh(self._routing)
            for policy in self._policies():
                await self._follow(policy, await self._routing.get(policy))
            await self._heartbeat()

    async def _follow(self, policy: str, state: RoutingState) -> None:
        current = self._registry.get(policy)
        if state.active is None:
            if current is None:
                self._registry.mark_unavailable(
                    policy, f"policy '{policy}' has no active version (no routing in Redis or in the store)"
                )
            return
        if current is not None and current.routing.serves() == state.serves():
            if current.revision != state.revision:
                self._registry.apply(policy, state)  # same bundles: only the revision moves
            return
        refused = self._refused.get(policy)
        if refused is not None and refused[0] == state.serves() and time.monotonic() - refused[1] < _RETRY_REFUSED_S:
            return  # refused a moment ago: retried when routing changes or after a while, not on every poll
        try:
            serving = await asyncio.to_thread(self._registry.apply, policy, state)
        except (StoreError, BundleError):
            self._refused[policy] = (state.serves(), time.monotonic())
            self._metrics.swap_failures.labels(policy).inc()
            return
        self._refused.pop(policy, None)
        self._metrics.swaps.labels(policy).inc()
        self._metrics.serving_revision.labels(policy).set(serving.revision)
        log.info("policy %s now serves %s (revision %d)", policy, serving.versions(), serving.revision)

    async def _forget_dead_workers(self) -> None:
        beats = await self._redis.hgetall(self._routing.workers)
        cutoff = time.time() - _FORGET_WORKERS_S
        dead = [worker for worker, raw in beats.items() if msgspec.json.decode(raw).get("time", 0) < cutoff]
        if dead:
            await self._redis.hdel(self._routing.workers, *dead)

    async def _heartbeat(self) -> None:
        serving = {}
        for policy in self._policies():
            current = self._registry.get(policy)
            if current is not None:
                serving[policy] = {**current.versions(), "revision": current.revision}
        beat = msgspec.json.encode({"time": time.time(), "serving": serving})
        await self._redis.hset(self._routing.workers, self.worker_id, beat)

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
