"""The feedback record contract (DESIGN.md): request id, time, reward signals, one per event.

The service appends one per accepted `POST /v1/feedback` event to the feedback stream; the trainer
joins it to its decision by request id (and item id, for per-item events).
"""

from __future__ import annotations

import msgspec

STREAM_FIELD = b"f"  # the stream entry's single field; its value is the record as JSON


class FeedbackRecord(msgspec.Struct):
    """One feedback event for one logged decision."""

    request_id: str
    event_id: str
    time: float
    rewards: dict[str, float]
    item_id: str | None = None
    late: bool = False  # arrived after the reward window of its decision: not joined to its reward


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(FeedbackRecord)


def encode(record: FeedbackRecord) -> bytes:
    """JSON bytes of a record, as stored in the stream field."""
    return _encoder.encode(record)


def decode(data: bytes) -> FeedbackRecord:
    """Parse a stored record; raises msgspec.ValidationError if it does not match the contract."""
    return _decoder.decode(data)
