"""Which version of a policy serves whom: the live routing state in Redis, backed by a durable copy.

Per policy, a Redis hash holds the active version, the previous one (for rollback), an optional
canary (version + fraction of users) and an optional shadow version, plus a revision counter.
Every change bumps the revision and publishes the policy name on the routing channel, so every worker
of every replica converges at once; a worker that missed the message sees the change on its next
poll. Changes are Lua scripts, so two admins racing cannot interleave half-updates.

Every change is then written to the store's durable copy (contracts/store.py, ROUTING.json) before
it is acknowledged. When Redis has lost the hash (a restart without persistence, a failover to an
empty replica), the first reader restores it from that copy, with a revision one above the durable
one, so routing never silently falls back to an older version and the revision never goes backwards.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis

from contracts.routing import DEFAULT_NAMESPACE, RoutingState, routing_channel, routing_key, workers_key
from contracts.store import read_routing, record_routing

_BUMP = "redis.call('HINCRBY', KEYS[1], 'revision', 1) redis.call('PUBLISH', KEYS[2], ARGV[1])"

_ACTIVATE = f"""
local old = redis.call('HGET', KEYS[1], 'active')
if old ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'active', ARGV[2])
  if old then redis.call('HSET', KEYS[1], 'previous', old) end
  {_BUMP}
end
return 1
"""

_ROLLBACK = f"""
local old = redis.call('HGET', KEYS[1], 'active')
local previous = redis.call('HGET', KEYS[1], 'previous')
if not previous then return 0 end
redis.call('HSET', KEYS[1], 'active', previous, 'previous', old)
{_BUMP}
return 1
"""

_SET_FIELDS = f"""
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
{_BUMP}
return 1
"""

# Restore a lost hash from the durable copy; only the first of the workers racing to do it writes.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 1
"""


class RoutingStore:
    """Reads and changes routing states in Redis, and keeps the store's durable copy in step."""

    def __init__(self, redis: Redis, store: Path, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._redis = redis
        self._store = store
        self._namespace = namespace
        self.channel = routing_channel(namespace)
        self.workers = workers_key(namespace)
        self._activate = redis.register_script(_ACTIVATE)
        self._rollback = redis.register_script(_ROLLBACK)
        self._set_fields = redis.register_script(_SET_FIELDS)
        self._restore = redis.register_script(_RESTORE)

    def _keys(self, policy: str) -> list[str]:
        return [routing_key(self._namespace, policy), self.channel]

    async def get(self, policy: str) -> RoutingState:
        """The live state; restored from the durable copy first if Redis has none."""
        fields = await self._redis.hgetall(routing_key(self._namespace, policy))
        if fields:
            return RoutingState.from_hash(fields)
        durable = await asyncio.to_thread(read_routing, self._store / policy)
        if durable.active is None:
            return RoutingState()
        restored = RoutingState.from_dict({**durable.to_dict(), "revision": durable.revision + 1})
        args = [(name, "" if value is None else str(value)) for name, value in restored.to_dict().items()]
        await self._restore(keys=self._keys(policy), args=[policy, *(x for pair in args for x in pair)])
        return RoutingState.from_hash(await self._redis.hgetall(routing_key(self._namespace, policy)))

    async def revision(self, policy: str) -> int:
        return (await self.get(policy)).revision

    async def _changed(self, policy: str) -> RoutingState:
        """The state after a change, written to the durable copy before anyone is told it happened."""
        state = RoutingState.from_hash(await self._redis.hgetall(routing_key(self._namespace, policy)))
        await asyncio.to_thread(record_routing, self._store / policy, state)
        return state

    async def activate(self, policy: str, version: str) -> RoutingState:
        """Serve `version`; the version it replaces becomes the rollback target."""
        await self.get(policy)  # restore first: the durable previous must survive a lost hash
        await self._activate(keys=self._keys(policy), args=[policy, version])
        return await self._changed(policy)

    async def rollback(self, policy: str) -> RoutingState | None:
        """Swap active and previous; None if there is nothing to roll back to."""
        await self.get(policy)
        done = await self._rollback(keys=self._keys(policy), args=[policy])
        return await self._changed(policy) if done else None

    async def set_canary(self, policy: str, version: str | None, fraction: float) -> RoutingState:
        """Route `fraction` of users (by hash of their id) to `version`; None clears the canary."""
        await self.get(policy)
        fields = ["canary", version or "", "canary_fraction", str(fraction) if version else ""]
        await self._set_fields(keys=self._keys(policy), args=[policy, *fields])
        return await self._changed(policy)

    async def set_shadow(self, policy: str, version: str | None) -> RoutingState:
        """Score every request with `version` too and log it, never serve it; None clears it."""
        await self.get(policy)
        await self._set_fields(keys=self._keys(policy), args=[policy, "shadow", version or ""])
        return await self._changed(policy)
