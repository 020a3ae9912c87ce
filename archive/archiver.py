"""The archiver: consumer groups on the decision and feedback streams (every shard) → the Parquet lake.

One pass (`poll`) reads a batch from every stream; records wait in memory, grouped by partition
(contracts/lake.py), until `flush_bytes` of them have gathered or the oldest has waited
`flush_seconds`. A flush writes one file per partition (atomically: archive/parquet_files.py),
then acknowledges exactly the entries in those files, then trims each stream behind its slowest
group (archive/trim.py). So an entry leaves Redis only after it is durably in the lake and every
other group has read it; a crash before the acknowledgement re-delivers it (a duplicate row that
readers drop), never loses it. Entries that do not decode, or whose record Parquet cannot hold, go to
the stream's dead-letter stream with the reason and are acknowledged, so they never block a reader.
Every `retire_every_seconds`, shards that every group has read and acknowledged and nobody wrote to for
`retire_idle_seconds` (those of stopped workers) are deleted (archive/retire.py).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import redis

from archive.parquet_files import write_atomically
from archive.schema import record_row, record_schema
from archive.stream_consumer import Client, Entry, Poison, StreamConsumer
from archive.trim import trim_behind_groups
from contracts.lake import PARTITION_KEYS, Dataset, hour_of, partition_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One kind of record: its dataset, its contract struct and decoder, and the streams (shards) holding
    it now (called at every pass, so shards that appear later are read too). `retire`, given an idle time
    in seconds, deletes the streams that are done and idle that long and returns their names."""

    dataset: Dataset
    record_type: type[msgspec.Struct]
    decode: Callable[[dict[bytes, bytes]], msgspec.Struct]
    streams: Callable[[], list[str]]
    retire: Callable[[float], list[str]] | None = None


@dataclass(frozen=True)
class ArchiveConfig:
    lake: Path
    group: str
    consumer: str
    read_batch: int = 1024  # entries per stream per pass
    flush_bytes: int = 64 << 20  # records held in memory (as stored in Redis) before they are written
    flush_seconds: float = 30.0  # ... or once the oldest has waited this long
    # Rows per Parquet row group: a flush is normally one row group of up to `flush_bytes` (tens of MB
    # uncompressed), the size scan engines read well; only a flush of very many small records splits.
    row_group_rows: int = 128 * 1024
    claim_idle_ms: int = 300_000  # entries another consumer left pending this long are taken over
    trim: bool = True
    # Shards every group has read, with no entry newer than this, are deleted (None: never). Longer than a
    # dead worker's spool takes to be replayed (as soon as Redis answers): a replay after it is appended again.
    retire_idle_seconds: float | None = 3600.0
    retire_every_seconds: float = 60.0  # how often `run` looks for such shards
    retry_seconds: float = 1.0  # `run`'s pause after Redis did not answer, before it tries again


@dataclass
class ArchiveCounters:
    archived: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # rows written per dataset
    dead_lettered: int = 0
    files: int = 0
    trimmed: int = 0
    flushes: int = 0
    retired: int = 0  # shards deleted as done and idle
    redis_errors: int = 0  # passes of `run` that Redis did not answer (it waits and tries again)


@dataclass
class _Partition:
    rows: list[dict[str, Any]] = field(default_factory=list)
    entries: list[tuple[StreamConsumer[Any], str]] = field(default_factory=list)  # (consumer, entry id) per row


class Archiver:
    """Consumer groups on every stream of every source, writing the lake."""

    def __init__(self, client: Client, sources: list[Source], config: ArchiveConfig) -> None:
        if config.claim_idle_ms < 2 * 1000 * config.flush_seconds:
            # A buffered entry must never look abandoned: another consumer (or this one) would archive it twice.
            raise ValueError("claim_idle_ms must be at least twice flush_seconds")
        self._client = client
        self._sources = sources
        self._config = config
        self._schemas = {s.dataset: record_schema(s.record_type, PARTITION_KEYS[s.dataset]) for s in sources}
        self._consumers: dict[str, StreamConsumer[Any]] = {}
        self._buffer: dict[tuple[Dataset, tuple[str, ...]], _Partition] = defaultdict(_Partition)
        self._buffered_bytes = 0
        self._oldest = 0.0  # monotonic time the first buffered record arrived
        self._sequence = 0
        # Streams read from since the last flush: each is trimmed at the flush, also one that only held
        # entries that were dead-lettered (nothing of it was written, but it must not keep them).
        self._touched: set[StreamConsumer[Any]] = set()
        # Entries written to the lake whose acknowledgement Redis has not taken yet (it was away): sent again
        # first at the next flush, so they are not delivered and archived a second time.
        self._unacked: dict[StreamConsumer[Any], list[str]] = defaultdict(list)
        self.counters = ArchiveCounters()

    def poll(self) -> int:
        """Read one batch from every stream into memory; returns how many entries were read."""
        read = 0
        for source in self._sources:
            for stream in source.streams():
                consumer = self._consumer(stream, source)
                if consumer is None:
                    continue  # no such stream, yet or any more
                try:
                    good, poison = consumer.read(self._config.read_batch)
                except redis.ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    # Retired by another archiver of the group (nothing of it was pending), perhaps written
                    # to again since: a fresh group reads what the recreated shard holds.
                    del self._consumers[stream]
                    consumer = self._consumer(stream, source)
                    if consumer is None:
                        continue
                    good, poison = consumer.read(self._config.read_batch)
                if good or poison:
                    self._touched.add(consumer)
                self._dead_letter(consumer, poison)
                for entry in good:
                    self._add(source.dataset, consumer, entry)
                read += len(good) + len(poison)
        return read

    def flush_due(self) -> bool:
        if not self._buffered_bytes:
            return bool(self._touched or self._unacked)  # dead letters to trim away, acknowledgements to resend
        waited = time.monotonic() - self._oldest
        return self._buffered_bytes >= self._config.flush_bytes or waited >= self._config.flush_seconds

    def flush(self) -> int:
        """Write every buffered partition, acknowledge what was written, trim; returns rows written."""
        buffer, self._buffer = self._buffer, defaultdict(_Partition)
        touched, self._touched = self._touched, set()
        self._buffered_bytes = 0
        written = 0
        done: dict[StreamConsumer[Any], list[str]] = defaultdict(list)
        for (dataset, values), partition in sorted(buffer.items(), key=lambda item: item[0]):
            table, entries = self._table(dataset, partition)
            if table.num_rows:
                folder = partition_dir(
                    self._config.lake, dataset, dict(zip(PARTITION_KEYS[dataset], values, strict=True))
                )
                write_atomically(table.sort_by("time"), folder, self._file_name(), self._config.row_group_rows)
                self.counters.files += 1
                self.counters.archived[dataset] += table.num_rows
                written += table.num_rows
            for consumer, entry_id in entries:
                done[consumer].append(entry_id)
        for consumer, entry_ids in done.items():  # only now: every row above is durably in the lake
            self._unacked[consumer] += entry_ids
        self._acknowledge()
        if self._config.trim:
            for consumer in touched | set(done):
                self.counters.trimmed += trim_behind_groups(self._client, consumer.stream)
        self.counters.flushes += 1
        return written

    def drain(self, max_seconds: float | None = None) -> int:
        """Archive what the streams hold (a bounded run: `--once`), for at most `max_seconds` if new entries
        keep coming; returns rows written."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        before = sum(self.counters.archived.values())
        while self.poll() and (deadline is None or time.monotonic() < deadline):
            if self.flush_due():
                self.flush()
        self.flush()
        self.retire()
        return sum(self.counters.archived.values()) - before

    def retire(self) -> list[str]:
        """Delete the shards that are done and idle (archive/retire.py); returns their names."""
        idle = self._config.retire_idle_seconds
        if idle is None or not self._config.trim:  # deleting a shard removes what it holds, as trimming does
            return []
        gone = [name for source in self._sources if source.retire is not None for name in source.retire(idle)]
        for stream in gone:
            consumer = self._consumers.pop(stream, None)
            if consumer is not None:
                self._touched.discard(consumer)
        self.counters.retired += len(gone)
        return gone

    def run(self, stop: threading.Event, max_seconds: float | None = None, poll_seconds: float = 0.2) -> None:
        """Archive until `stop` is set (or `max_seconds` pass), then write what is buffered. Redis going away
        is waited out, and the archiver goes on where it was once Redis answers: what was buffered stays
        buffered, what was written and not acknowledged is acknowledged then. Entries of a flush that Redis
        interrupted before its files were written stay pending in Redis and are claimed again after
        `claim_idle_ms`. Nothing else is caught."""
        deadline = None if max_seconds is None else time.monotonic() + max_seconds
        retired_at = time.monotonic()
        away = False
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                try:
                    read = self.poll()
                    if self.flush_due():
                        self.flush()
                    if time.monotonic() - retired_at >= self._config.retire_every_seconds:
                        self.retire()
                        retired_at = time.monotonic()
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    self.counters.redis_errors += 1
                    if not away:
                        log.warning(
                            "archive: Redis unavailable, trying again every %.1f s: %s", self._config.retry_seconds, exc
                        )
                    away = True
                    stop.wait(self._config.retry_seconds)
                    continue
                if away:
                    log.info("archive: Redis is back")
                    away = False
                if not read:
                    stop.wait(poll_seconds)
        finally:
            try:
                self.flush()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # What is unacknowledged stays pending in Redis: this consumer reads it again when it restarts.
                log.warning(
                    "archive: Redis unavailable at the last flush, %d entries not acknowledged: %s",
                    sum(map(len, self._unacked.values())),
                    exc,
                )

    def _acknowledge(self) -> None:
        """Acknowledge what is in the lake; on a Redis error what was not taken stays for the next flush."""
        for consumer in list(self._unacked):
            consumer.ack(self._unacked[consumer])
            del self._unacked[consumer]

    def _consumer(self, stream: str, source: Source) -> StreamConsumer[Any] | None:
        consumer = self._consumers.get(stream)
        if consumer is None:
            consumer = StreamConsumer(
                self._client,
                stream,
                self._config.group,
                self._config.consumer,
                source.decode,
                self._config.claim_idle_ms,
            )
            if not consumer.ensure_group():
                return None
            self._consumers[stream] = consumer
        return consumer

    def _add(self, dataset: Dataset, consumer: StreamConsumer[Any], entry: Entry[Any]) -> None:
        record = entry.record
        values = {"hour": hour_of(record.time)}
        if "policy" in PARTITION_KEYS[dataset]:
            values["policy"] = record.policy
        key = (dataset, tuple(values[k] for k in PARTITION_KEYS[dataset]))
        partition = self._buffer[key]
        partition.rows.append(record_row(record, entry.stream, entry.entry_id, PARTITION_KEYS[dataset]))
        partition.entries.append((consumer, entry.entry_id))
        if not self._buffered_bytes:
            self._oldest = time.monotonic()
        self._buffered_bytes += entry.size

    def _table(self, dataset: Dataset, partition: _Partition) -> tuple[pa.Table, list[tuple[StreamConsumer[Any], str]]]:
        """The partition's rows as a table; a row Arrow refuses (an int past 64 bits) is dead-lettered alone."""
        schema = self._schemas[dataset]
        try:
            return pa.Table.from_pylist(partition.rows, schema=schema), partition.entries
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            pass
        kept: list[dict[str, Any]] = []
        for row, (consumer, entry_id) in zip(partition.rows, partition.entries, strict=True):
            try:
                pa.Table.from_pylist([row], schema=schema)
            except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
                reason = f"not representable in Parquet: {type(exc).__name__}: {exc}"[:1000]
                self._dead_letter(consumer, [Poison(consumer.stream, entry_id, consumer.fields_of(entry_id), reason)])
                continue
            kept.append(row)
        survivors = {id(row) for row in kept}
        entries = [e for row, e in zip(partition.rows, partition.entries, strict=True) if id(row) in survivors]
        return pa.Table.from_pylist(kept, schema=schema), entries

    def _dead_letter(self, consumer: StreamConsumer[Any], poison: list[Poison]) -> None:
        if not poison:
            return
        consumer.dead_letter(poison)
        self.counters.dead_lettered += len(poison)
        for item in poison:
            log.warning("archive: %s %s dead-lettered: %s", item.stream, item.entry_id, item.reason)

    def _file_name(self) -> str:
        self._sequence += 1
        return f"part-{int(time.time() * 1000)}-{self._config.consumer}-{uuid.uuid4().hex[:6]}-{self._sequence:05d}"
