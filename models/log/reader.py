"""Reading the service's streams as a trainer: one consumer of a Redis consumer group per stream.

Records are acknowledged only after the caller has durably used them (`ack`), so a trainer that
dies mid-batch leaves them pending; another consumer claims them (XAUTOCLAIM) once they have been
idle longer than `claim_idle_ms`, before it reads new ones. Several trainers scale as consumers of
one group (DESIGN.md, scale-out). `DecisionReader` reads decision records, `FeedbackReader` feedback
records; both are the same `StreamReader` with the stream's decoder. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import redis

from contracts import decision_record, feedback_record
from contracts.decision_record import DecisionRecord
from contracts.feedback_record import FeedbackRecord

T = TypeVar("T")


@dataclass(frozen=True)
class Logged(Generic[T]):
    entry_id: bytes  # the stream entry id, what `ack` takes
    record: T


LoggedDecision = Logged[DecisionRecord]
LoggedFeedback = Logged[FeedbackRecord]


class StreamReader(Generic[T]):
    """A named consumer in a consumer group on one stream whose entries `decode` turns into records."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        decode: Callable[[dict[bytes, bytes]], T],
        claim_idle_ms: int = 60_000,
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._decode_fields = decode
        self._claim_idle_ms = claim_idle_ms

    def ensure_group(self) -> None:
        """Create the group at the start of the stream (and the stream), unless it exists."""
        try:
            self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 256, block_ms: int | None = None) -> list[Logged[T]]:
        """Records abandoned by dead consumers first, then new ones; up to `count` in all."""
        claimed = self._claim_abandoned(count)
        if len(claimed) >= count:
            return claimed
        # [[stream, [(entry id, fields), ...]], ...], or None when nothing arrived within block_ms
        reply = cast(
            "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None",
            self._client.xreadgroup(
                self._group, self._consumer, {self._stream: ">"}, count=count - len(claimed), block=block_ms
            ),
        )
        fresh = [self._decode(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]
        return claimed + fresh

    def read_all(self, batch: int = 512) -> list[Logged[T]]:
        """Everything available now (claimed and new), batch by batch, without blocking."""
        out: list[Logged[T]] = []
        while chunk := self.read(count=batch):
            out += chunk
        return out

    def ack(self, records: list[Logged[T]]) -> int:
        """Acknowledge records the caller has durably used; they will not be delivered again."""
        if not records:
            return 0
        return int(self._client.xack(self._stream, self._group, *[r.entry_id for r in records]))

    def delete(self, records: list[Logged[T]]) -> int:
        """Remove acknowledged records from the stream (XDEL), for a stream this group alone reads: the
        caller's durable copy is then the only one. Returns how many entries were removed."""
        if not records:
            return 0
        return int(self._client.xdel(self._stream, *[r.entry_id for r in records]))

    def pending(self) -> int:
        """Records delivered to some consumer of the group and not yet acknowledged."""
        return int(self._client.xpending(self._stream, self._group)["pending"])

    def _claim_abandoned(self, count: int) -> list[Logged[T]]:
        reply: Any = self._client.xautoclaim(
            self._stream, self._group, self._consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=count
        )
        entries = reply[1]  # Redis 6.2 answers [next, entries]; 7+ adds the deleted ids
        return [self._decode(entry_id, fields) for entry_id, fields in entries if fields]

    def _decode(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Logged[T]:
        return Logged(entry_id, self._decode_fields(fields))


def _decision(fields: dict[bytes, bytes]) -> DecisionRecord:
    return decision_record.decode(fields[decision_record.STREAM_FIELD])


def _feedback(fields: dict[bytes, bytes]) -> FeedbackRecord:
    return feedback_record.decode(fields[feedback_record.STREAM_FIELD])


class DecisionReader(StreamReader[DecisionRecord]):
    """The decision stream, read by a consumer group."""

    def __init__(
        self, client: redis.Redis, stream: str, group: str, consumer: str, claim_idle_ms: int = 60_000
    ) -> None:
        super().__init__(client, stream, group, consumer, _decision, claim_idle_ms)


class FeedbackReader(StreamReader[FeedbackRecord]):
    """The feedback stream, read by a consumer group."""

    def __init__(
        self, client: redis.Redis, stream: str, group: str, consumer: str, claim_idle_ms: int = 60_000
    ) -> None:
        super().__init__(client, stream, group, consumer, _feedback, claim_idle_ms)
