"""Which version of a policy serves whom: the routing state in Redis, the one source of truth.

Per policy, a Redis hash holds the active version, the previous one (for rollback), an optional
canary (version + fraction of users) and an optional shadow version, plus a revision counter.
Every change bumps the revision and publishes the policy name on ROUTING_CHANNEL, so every worker
of every replica converges at once; a worker that missed the message sees the new revision on its
next poll. Changes are Lua scripts, so two admins racing cannot interleave half-updates.
"""

from __future__ import annotations

from redis.asyncio import Redis

from contracts.routing import DEFAULT_NAMESPACE, RoutingState, routing_channel, routing_key

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

_BOOTSTRAP = f"""
if redis.call('HSETNX', KEYS[1], 'active', ARGV[2]) == 1 then {_BUMP} end
return 1
"""


class RoutingStore:
    """Reads and changes routing states in Redis."""

    def __init__(self, redis: Redis, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._redis = redis
        self._namespace = namespace
        self.channel = routing_channel(namespace)
        self._activate = redis.register_script(_ACTIVATE)
        self._rollback = redis.register_script(_ROLLBACK)
        self._set_fields = redis.register_script(_SET_FIELDS)
        self._bootstrap = redis.register_script(_BOOTSTRAP)

    def _keys(self, policy: str) -> list[str]:
        return [routing_key(self._namespace, policy), self.channel]

    async def get(self, policy: str) -> RoutingState:
        return RoutingState.from_hash(await self._redis.hgetall(routing_key(self._namespace, policy)))

    async def revision(self, policy: str) -> int:
        value = await self._redis.hget(routing_key(self._namespace, policy), "revision")
        return int(value) if value else 0

    async def bootstrap(self, policy: str, version: str) -> None:
        """Set the active version only if the policy has none yet (first start from a fresh store)."""
        await self._bootstrap(keys=self._keys(policy), args=[policy, version])

    async def activate(self, policy: str, version: str) -> RoutingState:
        """Serve `version`; the version it replaces becomes the rollback target."""
        await self._activate(keys=self._keys(policy), args=[policy, version])
        return await self.get(policy)

    async def rollback(self, policy: str) -> RoutingState | None:
        """Swap active and previous; None if there is nothing to roll back to."""
        done = await self._rollback(keys=self._keys(policy), args=[policy])
        return await self.get(policy) if done else None

    async def set_canary(self, policy: str, version: str | None, fraction: float) -> RoutingState:
        """Route `fraction` of users (by hash of their id) to `version`; None clears the canary."""
        fields = ["canary", version or "", "canary_fraction", str(fraction) if version else ""]
        await self._set_fields(keys=self._keys(policy), args=[policy, *fields])
        return await self.get(policy)

    async def set_shadow(self, policy: str, version: str | None) -> RoutingState:
        """Score every request with `version` too and log it, never serve it; None clears it."""
        await self._set_fields(keys=self._keys(policy), args=[policy, "shadow", version or ""])
        return await self.get(policy)
