"""Trimming a stream behind its slowest consumer group (XTRIM MINID), never past an unread entry.

For each group on the stream, the first entry it still needs is the older of its oldest pending entry
(delivered, not acknowledged) and the entry after its last delivered one. Everything older than the
minimum of those over all groups has been read and acknowledged by every group, archiver and
trainers alike, and is removed; Redis then holds only what some group still has to take. A group that
stops reading holds the stream back: that is the price of never trimming what someone has not read.
"""

from __future__ import annotations

from typing import Any

import redis

from archive.stream_consumer import Client

EntryId = tuple[int, int]


def parse_id(text: bytes | str) -> EntryId:
    """'<ms>-<seq>' as a pair that orders like Redis orders ids."""
    raw = text.decode() if isinstance(text, bytes) else text
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def format_id(entry: EntryId) -> str:
    return f"{entry[0]}-{entry[1]}"


def first_needed(client: Client, stream: str) -> EntryId | None:
    """The oldest entry id some group of the stream still needs; None if the stream has no group (or is
    gone: a Redis restarted without its data, a retired shard)."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError as exc:
        if "no such key" in str(exc):
            return None
        raise
    bound: EntryId | None = None
    for group in groups:
        info = {(k.decode() if isinstance(k, bytes) else k): v for k, v in group.items()}
        ms, seq = parse_id(info["last-delivered-id"])
        needed = (ms, seq + 1)
        if int(info["pending"]):
            summary: Any = client.xpending(stream, info["name"])
            needed = min(needed, parse_id(summary["min"]))
        bound = needed if bound is None else min(bound, needed)
    return bound


def trim_behind_groups(client: Client, stream: str) -> int:
    """Remove every entry all groups are done with; returns how many went. A stream without groups is
    left alone (nobody has said what it needs)."""
    bound = first_needed(client, stream)
    if bound is None:
        return 0
    # Exact (no `~`): the bound is a promise about single entries; approximate trimming would keep up to a
    # node (100 entries) more, which is safe but makes "what is left" depend on Redis's node size.
    return int(client.xtrim(stream, minid=format_id(bound), approximate=False))
