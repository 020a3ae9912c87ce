"""Feedback: rewards by request id, appended to a Redis Stream exactly once per event."""

from __future__ import annotations

import hashlib
import time

import msgspec
from redis.asyncio import Redis

from service.schema import FeedbackRequest

# Remember the event and append it in one atomic step, so a retried POST (or two racing
# workers) can never store it twice, and a failed append never marks it as seen.
_APPEND_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], '*', 'f', ARGV[2])
end
return false
"""


class FeedbackRecord(msgspec.Struct):
    """The feedback record contract (DESIGN.md): request id, time, reward signals."""

    request_id: str
    event_id: str
    time: float
    rewards: dict[str, float]
    item_id: str | None = None


class FeedbackStore:
    """Writes feedback events; identical retries are stored once."""

    def __init__(self, redis: Redis, stream: str, dedupe_seconds: int) -> None:
        self._redis = redis
        self._stream = stream
        self._dedupe_seconds = dedupe_seconds
        self._script = redis.register_script(_APPEND_ONCE)

    async def append(self, feedback: FeedbackRequest) -> bool:
        """Store the event; False if the same event was already stored (a duplicate)."""
        event_id = feedback.event_id or _content_id(feedback)
        record = FeedbackRecord(
            request_id=feedback.request_id,
            event_id=event_id,
            time=time.time(),
            rewards=feedback.rewards,
            item_id=feedback.item_id,
        )
        seen_key = f"{self._stream}:seen:{feedback.request_id}:{event_id}"
        stored = await self._script(
            keys=[seen_key, self._stream], args=[self._dedupe_seconds, msgspec.json.encode(record)]
        )
        return stored is not None


def _content_id(feedback: FeedbackRequest) -> str:
    """Without a client event id, the event is its content: the same body twice is one event."""
    body = msgspec.json.encode([feedback.item_id, sorted(feedback.rewards.items())])
    return hashlib.sha256(body).hexdigest()[:32]
