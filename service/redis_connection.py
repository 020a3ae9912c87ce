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
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

CLUSTER_SCHEME = "redis+cluster://"


def connect(url: str, cluster: bool = False) -> Redis:
    """A client for `url`. The cluster client is returned as `Redis`: it answers the same commands the service
    sends (single-slot scripts, streams, hashes, pub/sub), routed to the node that owns each key's slot."""
    if url.startswith(CLUSTER_SCHEME):
        url, cluster = "redis://" + url.removeprefix(CLUSTER_SCHEME), True
    if cluster:
        return cast(Redis, RedisCluster.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0))
    # A client made from a URL retries nothing by default: every connection that a Redis restart closed while
    # it sat idle in the pool failed its next command. Resend once on a fresh connection; the service's writes
    # carry their own ids (stream entry ids, feedback event ids), so a resent write is refused as a duplicate;
    # a resent routing change bumps the revision twice, which only moves it forward. Timeouts are not resent.
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    return Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0, retry=retry)
