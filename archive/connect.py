"""A synchronous Redis client for the archiver: a plain server or a Redis Cluster.

A cluster is named by the URL scheme `redis+cluster://host:port` (any node; the client discovers the
others) or by `CASCADE_REDIS_CLUSTER=true` with a plain `redis://` URL.
"""

from __future__ import annotations

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from archive.stream_consumer import Client

CLUSTER_SCHEME = "redis+cluster://"


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME)


def connect(url: str, cluster: bool = False) -> Client:
    """A client for `url`; the cluster client when the URL or `cluster` says so."""
    if is_cluster_url(url):
        return redis.cluster.RedisCluster.from_url("redis://" + url.removeprefix(CLUSTER_SCHEME))
    if cluster:
        return redis.cluster.RedisCluster.from_url(url)
    # As the service's client (service/redis_connection.py): a connection a Redis restart closed while idle
    # in the pool is replaced and the command sent once more (the archiver's writes are acknowledgements,
    # trims and dead letters: the same again changes nothing, or adds a copy of a dead letter).
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)))
