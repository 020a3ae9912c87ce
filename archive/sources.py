"""What the archiver reads: the decision and feedback streams of the service, every shard of each."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from archive.archiver import Source
from archive.stream_consumer import Client
from contracts import decision_record, feedback_record
from contracts.decision_record import DecisionRecord
from contracts.feedback_record import FeedbackRecord


def decode_decision(fields: dict[bytes, bytes]) -> msgspec.Struct:
    return decision_record.decode(fields[decision_record.STREAM_FIELD])


def decode_feedback(fields: dict[bytes, bytes]) -> msgspec.Struct:
    return feedback_record.decode(fields[feedback_record.STREAM_FIELD])


def stream_shards(client: Client, base: str) -> Callable[[], list[str]]:
    """The streams of one logical stream, looked up at every pass."""
    del client  # one stream per name until the writer's shards are named in contracts/streams.py
    return lambda: [base]


def service_sources(client: Client, decision_stream: str, feedback_stream: str) -> list[Source]:
    """Decisions and feedback as the service writes them."""
    return [
        Source("decisions", DecisionRecord, decode_decision, stream_shards(client, decision_stream)),
        Source("feedback", FeedbackRecord, decode_feedback, stream_shards(client, feedback_stream)),
    ]
