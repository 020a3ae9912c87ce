"""Names of the Redis streams and keys the decision log and the feedback path share with readers.

Decision records go to one stream per (policy, producer): a *shard*. A producer is one serving
worker process; it appends to its own shards only, with explicit entry ids that only grow, so a
batch it replays (from its spool, after a lost reply) is refused entry by entry by Redis instead of
being appended twice. Shard names carry a Redis Cluster hash tag of the policy, so every shard of a
policy (and its registry below) hashes to one slot on a cluster, and producers spread over the cluster
by policy:

    {<stream>:<policy>}:<producer>      e.g. {cascade:decisions:demo}:host-4242-1a2b3c4d

`<stream>` is the configured decision stream name (`CASCADE_DECISION_STREAM`, default
`cascade:decisions`). How a reader finds every shard: the Redis set `<stream>:shards`
(`decision_shards_key`) holds every shard name a producer wrote to and no reader retired (SADD with
every batch, after its appends); `SMEMBERS` it, `parse_decision_shard` each name for its policy and
producer, and read each shard as an ordinary stream (XREADGROUP per shard; a record's order is its
entry id within a shard, its `time` across shards). A reader may delete a shard that every group has
read and nobody wrote to for a while (archive/retire.py: the shards of stopped workers) and unregister
it; a later append recreates it and registers it again.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

DEFAULT_DECISION_STREAM: Final = "cascade:decisions"
DEFAULT_FEEDBACK_STREAM: Final = "cascade:feedback"

_SHARD = re.compile(r"^\{(?P<stream>.+):(?P<policy>[^:{}]+)\}:(?P<producer>[^:{}]+)$")
_PRODUCER_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class DecisionShard(NamedTuple):
    stream: str
    policy: str
    producer: str


def decision_shard(stream: str, policy: str, producer: str) -> str:
    """The stream one producer appends one policy's decision records to."""
    return f"{{{stream}:{policy}}}:{producer}"


def decision_shards_key(stream: str) -> str:
    """The Redis set of every decision shard name of `stream` (SMEMBERS it to find them all)."""
    return f"{stream}:shards"


def parse_decision_shard(name: str) -> DecisionShard:
    """Stream, policy and producer of a shard name; ValueError if it is not one."""
    match = _SHARD.match(name)
    if match is None:
        raise ValueError(f"not a decision shard name: {name!r}")
    return DecisionShard(match["stream"], match["policy"], match["producer"])


def producer_name(host: str, pid: int, nonce: str) -> str:
    """A producer id: unique per worker process lifetime, safe inside a key (no ':', '{' or '}')."""
    return _PRODUCER_UNSAFE.sub("_", f"{host}-{pid}-{nonce}")


def decision_index_bucket(decided: float, index_seconds: int) -> int:
    """Which index hash remembers a decision made at `decided` (epoch seconds)."""
    return int(decided // index_seconds)


def decision_index_key(stream: str, bucket: int) -> str:
    """A hash of logged decisions, request id → decision time (epoch seconds, as text), for one period of
    `index_seconds`; it expires at the end of the next period, so every decision is remembered for at
    least `index_seconds`. One field per record (HSET once per batch), not one key with a TTL each."""
    return f"{stream}:decided:{bucket}"


def feedback_seen_key(stream: str, request_id: str, event_id: str) -> str:
    """The key that makes one feedback event stored once, however often it is sent."""
    return f"{stream}:seen:{request_id}:{event_id}"
