"""The service's Redis client: one server, or a Redis Cluster (DESIGN.md, scale-out).

A cluster is named by the URL scheme `redis+cluster://host:port` (any node; the client discovers the
rest) or by `CASCADE_REDIS_CLUSTER=true` with a `redis://` URL. Every key a script touches must then
share a slot: give the stream names and the routing namespace one hash tag (e.g. `{cascade}:decisions`,
`{cascade}:feedback`, `{cascade}`), since the per-request keys and the routing keys embed them.
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

CLUSTER_SCHEME = "redis+cluster://"


def connect(url: str, cluster: bool = False) -> Redis:
    """A client for `url`. The cluster client is returned as `Redis`: it answers the same commands the service
    sends (single-slot scripts, streams, hashes, pub/sub), routed to the node that owns each key's slot."""
    if url.startswith(CLUSTER_SCHEME):
        url, cluster = "redis://" + url.removeprefix(CLUSTER_SCHEME), True
    if cluster:
        return cast(Redis, RedisCluster.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0))
    return Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
