"""Reading the service's decision log as a trainer: one consumer of a Redis consumer group.

Records are acknowledged only after the caller has durably used them (`ack`), so a trainer that
dies mid-batch leaves them pending; another consumer claims them (XAUTOCLAIM) once they have been
idle longer than `claim_idle_ms`, before it reads new ones. Several trainers scale as consumers of
one group (DESIGN.md, scale-out). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from service import decision_record
from service.decision_record import DecisionRecord


@dataclass(frozen=True)
class LoggedDecision:
    entry_id: bytes  # the stream entry id, what `ack` takes
    record: DecisionRecord


class DecisionReader:
    """A named consumer in a consumer group on the decision stream."""

    def __init__(
        self, client: redis.Redis, stream: str, group: str, consumer: str, claim_idle_ms: int = 60_000
    ) -> None:
        self._client = client
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._claim_idle_ms = claim_idle_ms

    def ensure_group(self) -> None:
        """Create the group at the start of the stream (and the stream), unless it exists."""
        try:
            self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int = 256, block_ms: int | None = None) -> list[LoggedDecision]:
        """Records abandoned by dead consumers first, then new ones; up to `count` in all."""
        claimed = self._claim_abandoned(count)
        if len(claimed) >= count:
            return claimed
        reply = self._client.xreadgroup(
            self._group, self._consumer, {self._stream: ">"}, count=count - len(claimed), block=block_ms
        )
        fresh = [self._decode(entry_id, fields) for _, entries in reply or [] for entry_id, fields in entries]
        return claimed + fresh

    def ack(self, decisions: list[LoggedDecision]) -> int:
        """Acknowledge records the caller has durably used; they will not be delivered again."""
        if not decisions:
            return 0
        return int(self._client.xack(self._stream, self._group, *[d.entry_id for d in decisions]))

    def pending(self) -> int:
        """Records delivered to some consumer of the group and not yet acknowledged."""
        return int(self._client.xpending(self._stream, self._group)["pending"])

    def _claim_abandoned(self, count: int) -> list[LoggedDecision]:
        reply: Any = self._client.xautoclaim(
            self._stream, self._group, self._consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=count
        )
        entries = reply[1]  # Redis 6.2 answers [next, entries]; 7+ adds the deleted ids
        return [self._decode(entry_id, fields) for entry_id, fields in entries if fields]

    @staticmethod
    def _decode(entry_id: bytes, fields: dict[bytes, bytes]) -> LoggedDecision:
        return LoggedDecision(entry_id, decision_record.decode(fields[decision_record.STREAM_FIELD]))
