"""Feedback: rewards by request id, appended to a Redis Stream exactly once per event.

Each event is checked against the decision log in the same atomic step that stores it:
- the request id must be one the decision log wrote (a field of its decision index hash
  `<decisions>:decided:<period>`, kept for at least `decision_index_seconds`: this period's or the
  previous one's); otherwise nothing is stored and the answer is "unknown_request";
- an event seen before (same event id, or same content without one) is stored once: "duplicate";
- an event later than the reward window after its decision is stored with `late: true` ("late"), so
  the trainer's join keeps it apart instead of silently merging it into the decision's reward.
"""

from __future__ import annotations

import hashlib
import time
from typing import Literal

import msgspec
from redis.asyncio import Redis

from contracts import feedback_record
from contracts.feedback_record import FeedbackRecord
from contracts.streams import decision_index_bucket, decision_index_key, feedback_seen_key
from service.schema import FeedbackRequest

FeedbackOutcome = Literal["accepted", "late", "duplicate", "unknown_request"]

# KEYS: this and the previous period's decision index, seen key, feedback stream.
# ARGV: seen TTL, window, now, record (on time), record (late), request id.
_APPEND_ONCE = f"""
local served = redis.call('HGET', KEYS[1], ARGV[6]) or redis.call('HGET', KEYS[2], ARGV[6])
if not served then
  return 'unknown_request'
end
if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then
  return 'duplicate'
end
if tonumber(ARGV[3]) - tonumber(served) > tonumber(ARGV[2]) then
  redis.call('XADD', KEYS[4], '*', '{feedback_record.STREAM_FIELD.decode()}', ARGV[5])
  return 'late'
end
redis.call('XADD', KEYS[4], '*', '{feedback_record.STREAM_FIELD.decode()}', ARGV[4])
return 'accepted'
"""


class FeedbackStore:
    """Writes feedback events for logged decisions; identical retries are stored once."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        dedupe_seconds: int,
        decision_stream: str,
        reward_window_seconds: float,
        index_seconds: int = 24 * 3600,
    ) -> None:
        self._redis = redis
        self._stream = stream
        self._dedupe_seconds = dedupe_seconds
        self._decision_stream = decision_stream
        self._window = reward_window_seconds
        self._index_seconds = index_seconds
        self._script = redis.register_script(_APPEND_ONCE)

    async def append(self, feedback: FeedbackRequest) -> FeedbackOutcome:
        """Store the event unless its request is unknown or the event is a repeat; say which happened."""
        event_id = feedback.event_id or _content_id(feedback)
        now = time.time()
        record = FeedbackRecord(
            request_id=feedback.request_id,
            event_id=event_id,
            time=now,
            rewards=feedback.rewards,
            item_id=feedback.item_id,
        )
        on_time = feedback_record.encode(record)
        late = feedback_record.encode(msgspec.structs.replace(record, late=True))
        seen_key = feedback_seen_key(self._stream, feedback.request_id, event_id)
        bucket = decision_index_bucket(now, self._index_seconds)
        outcome = await self._script(
            keys=[
                decision_index_key(self._decision_stream, bucket),
                decision_index_key(self._decision_stream, bucket - 1),
                seen_key,
                self._stream,
            ],
            args=[self._dedupe_seconds, repr(self._window), repr(now), on_time, late, feedback.request_id],
        )
        return _OUTCOMES[outcome.decode() if isinstance(outcome, bytes) else str(outcome)]


_OUTCOMES: dict[str, FeedbackOutcome] = {
    "accepted": "accepted",
    "late": "late",
    "duplicate": "duplicate",
    "unknown_request": "unknown_request",
}


def _content_id(feedback: FeedbackRequest) -> str:
    """Without a client event id, the event is its content: the same body twice is one event."""
    body = msgspec.json.encode([feedback.item_id, sorted(feedback.rewards.items())])
    return hashlib.sha256(body).hexdigest()[:32]
