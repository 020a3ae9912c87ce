"""One answered decision record on its way to Redis, and its form in the spool."""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class Pending(NamedTuple):
    """A record with the shard and entry id it was given when it was answered."""

    seq: int  # this producer's count of answered records when it was answered (1, 2, ...)
    shard: str  # the stream it belongs to (contracts/streams.py, decision_shard)
    entry_id: str  # explicit stream entry id `<ms>-<seq>`, growing per producer
    request_id: str
    time: float  # the decision time (epoch seconds): the value of its decision key
    data: bytes  # the encoded record (contracts/decision_record.py)
    answered: float = 0.0  # time.monotonic() when answered: what the crash window's age is measured by


# In the spool: [shard, entry id, request id, time, record], so any worker can replay it into its shard.
_Spooled = tuple[str, str, str, float, bytes]
_spooled_decoder = msgspec.msgpack.Decoder(_Spooled)
_encoder = msgspec.msgpack.Encoder()


def encode_spooled(entry: Pending) -> bytes:
    return _encoder.encode((entry.shard, entry.entry_id, entry.request_id, entry.time, entry.data))


def decode_spooled(data: bytes) -> Pending | None:
    """The spooled entry, or None for bytes that are not one (a spool of an older format, a torn write)."""
    try:
        shard, entry_id, request_id, decided, record = _spooled_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return Pending(0, shard, entry_id, request_id, decided, record)
