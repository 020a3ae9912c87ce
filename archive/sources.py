"""What the archiver reads: the decision and feedback streams of the service, every shard of each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from archive.archiver import Source
from archive.retire import retire_idle_shards
from archive.stream_consumer import Client
from contracts import decision_record, feedback_record
from contracts.decision_record import DecisionRecord
from contracts.feedback_record import FeedbackRecord
from contracts.streams import decision_shards_key


def decode_decision(fields: dict[bytes, bytes]) -> msgspec.Struct:
    return decision_record.decode(fields[decision_record.STREAM_FIELD])


def decode_feedback(fields: dict[bytes, bytes]) -> msgspec.Struct:
    return feedback_record.decode(fields[feedback_record.STREAM_FIELD])


def decision_streams(client: Client, base: str) -> Callable[[], list[str]]:
    """Every shard of the decision stream `base` (contracts/streams.py: the producers register each shard in
    `decision_shards_key(base)` before they first append to it), plus `base` itself for records written
    before there were shards. Looked up at every pass: a worker that starts later adds its shards."""

    def streams() -> list[str]:
        members: Any = client.smembers(decision_shards_key(base))
        shards = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        return [base, *shards]

    return streams


def service_sources(client: Client, decision_stream: str, feedback_stream: str) -> list[Source]:
    """Decisions and feedback as the service writes them."""
    return [
        Source(
            "decisions",
            DecisionRecord,
            decode_decision,
            decision_streams(client, decision_stream),
            lambda idle_seconds: retire_idle_shards(client, decision_stream, idle_seconds),
        ),
        Source("feedback", FeedbackRecord, decode_feedback, lambda: [feedback_stream]),  # one stream, no shards
    ]
