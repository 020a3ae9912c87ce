"""Names of the Redis streams and keys the decision log and the feedback path share with readers."""

from __future__ import annotations

from typing import Final

DEFAULT_DECISION_STREAM: Final = "cascade:decisions"
DEFAULT_FEEDBACK_STREAM: Final = "cascade:feedback"


def decision_key(stream: str, request_id: str) -> str:
    """The key that remembers a logged decision (its value: the decision time, epoch seconds)."""
    return f"{stream}:decision:{request_id}"


def feedback_seen_key(stream: str, request_id: str, event_id: str) -> str:
    """The key that makes one feedback event stored once, however often it is sent."""
    return f"{stream}:seen:{request_id}:{event_id}"
