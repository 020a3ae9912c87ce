"""One consumer of a consumer group on one stream (one shard): read, decode, dead-letter, acknowledge.

A restarted consumer first re-reads its own pending entries (delivered before the restart, never
acknowledged: their rows were in memory, not in the lake), then claims entries other consumers of
the group abandoned (XAUTOCLAIM, idle longer than `claim_idle_ms`), then reads new ones. An entry that
does not decode as its record is copied to the dead-letter stream with the reason and acknowledged
there and then, so no read ever returns it again and nothing behind it waits (no reader blocks on it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
import redis
import redis.cluster

from contracts.lake import (
    DEAD_ENTRY_FIELD,
    DEAD_FIELDS_FIELD,
    DEAD_REASON_FIELD,
    DEAD_STREAM_FIELD,
    dead_letter_stream,
)

T = TypeVar("T")
Client = redis.Redis | redis.cluster.RedisCluster
# Redis' reply to XGROUP CREATE without MKSTREAM on a key that does not exist.
_NO_SUCH_KEY = "requires the key to exist"
DEAD_LETTER_MAXLEN = 100_000  # a dead-letter stream is for inspection; past this its oldest entries go


@dataclass(frozen=True)
class Entry(Generic[T]):
    stream: str
    entry_id: str
    record: T
    size: int  # bytes of the stored fields: what the entry costs while it waits in memory


@dataclass(frozen=True)
class Poison:
    stream: str
    entry_id: str
    fields: dict[bytes, bytes]
    reason: str


class StreamConsumer(Generic[T]):
    """A named consumer of `group` on `stream`, whose entries `decode` turns into records."""

    def __init__(
        self,
        client: Client,
        stream: str,
        group: str,
        consumer: str,
        decode: Callable[[dict[bytes, bytes]], T],
        claim_idle_ms: int,
    ) -> None:
        self.stream = stream
        self._client = client
        self._group = group
        self._consumer = consumer
        self._decode = decode
        self._claim_idle_ms = claim_idle_ms
        self._history: str | None = "0"  # cursor over this consumer's own pending entries, until read

    def ensure_group(self) -> bool:
        """Create the group at the stream's start unless it exists; False if there is no stream (yet, or any
        more: a retired shard, archive/retire.py). Never creates the stream: an empty stream made here for a
        shard another archiver just deleted would stay in Redis, registered nowhere."""
        try:
            self._client.xgroup_create(self.stream, self._group, id="0")
        except redis.ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return True
            if _NO_SUCH_KEY in str(exc):
                return False
            raise
        return True

    def read(self, count: int) -> tuple[list[Entry[T]], list[Poison]]:
        """Up to `count` entries: own pending ones first, then abandoned ones, then new ones."""
        if self._history is not None:
            raw = self._read_group(self._history, count)
            if raw:
                self._history = raw[-1][0]
                return self._split(raw)
            self._history = None
        raw = self._claim(count)
        if len(raw) < count:
            raw += self._read_group(">", count - len(raw))
        return self._split(raw)

    def ack(self, entry_ids: list[str]) -> int:
        """Acknowledge entries whose rows are durably in the lake."""
        acked = 0
        for start in range(0, len(entry_ids), 10_000):
            acked += int(self._client.xack(self.stream, self._group, *entry_ids[start : start + 10_000]))
        return acked

    def dead_letter(self, poison: list[Poison]) -> None:
        """Copy each entry to the dead-letter stream with its reason, then acknowledge it here."""
        if not poison:
            return
        target = dead_letter_stream(self.stream)
        for item in poison:
            fields: dict[bytes, bytes] = {
                DEAD_STREAM_FIELD: item.stream.encode(),
                DEAD_ENTRY_FIELD: item.entry_id.encode(),
                DEAD_REASON_FIELD: item.reason.encode(),
                DEAD_FIELDS_FIELD: msgspec.msgpack.encode(item.fields),
            }
            self._client.xadd(target, fields, maxlen=DEAD_LETTER_MAXLEN, approximate=True)  # type: ignore[arg-type]
        self.ack([item.entry_id for item in poison])

    def fields_of(self, entry_id: str) -> dict[bytes, bytes]:
        """The stored fields of one entry still in the stream ({} if it is gone)."""
        found: Any = self._client.xrange(self.stream, entry_id, entry_id)
        return dict(found[0][1]) if found else {}

    def _read_group(self, cursor: str, count: int) -> list[tuple[str, dict[bytes, bytes] | None]]:
        # [[stream, [(entry id, fields), ...]]], or None / [] when nothing is there
        reply: Any = self._client.xreadgroup(self._group, self._consumer, {self.stream: cursor}, count=count)
        return [(_text(entry_id), fields) for _, entries in reply or [] for entry_id, fields in entries]

    def _claim(self, count: int) -> list[tuple[str, dict[bytes, bytes] | None]]:
        reply: Any = self._client.xautoclaim(
            self.stream, self._group, self._consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=count
        )
        return [(_text(entry_id), fields) for entry_id, fields in reply[1]]  # 6.2: [next, entries]; 7+: + deleted

    def _split(self, raw: list[tuple[str, dict[bytes, bytes] | None]]) -> tuple[list[Entry[T]], list[Poison]]:
        good: list[Entry[T]] = []
        poison: list[Poison] = []
        gone: list[str] = []
        for entry_id, fields in raw:
            if not fields:  # deleted from the stream while pending (XDEL by someone): nothing to archive
                gone.append(entry_id)
                continue
            try:
                record = self._decode(fields)
            except (msgspec.MsgspecError, KeyError, ValueError, TypeError, UnicodeError) as exc:
                poison.append(Poison(self.stream, entry_id, fields, f"{type(exc).__name__}: {exc}"[:1000]))
                continue
            good.append(Entry(self.stream, entry_id, record, sum(len(k) + len(v) for k, v in fields.items())))
        self.ack(gone)
        return good, poison


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
