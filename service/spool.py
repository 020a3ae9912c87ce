"""A local append-only spool for decision records not yet in Redis, and the ledger that bounds a crash.

Records are length-prefixed (4-byte big-endian) byte strings, appended in order and fsynced per
batch when asked. The writer replays the spool to Redis, in order, before it writes anything newer,
so each producer's records reach its shards in the order they were served. A spool whose worker died
is claimed (flock) and replayed by a live worker as soon as Redis takes it.

The ledger is two counters in a small memory-mapped file beside the spool: how many records the
worker has answered, and how many of those (a prefix, since records become durable in order) are in
Redis or in the spool. Updating it is a store to memory; the kernel keeps the page when the process
is killed, so the next worker reads exactly how many answered records a crash lost (`lost`). (A
crash of the whole host can lose the page too; the window still bounds the loss, the count may lag.)
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_LENGTH = struct.Struct(">I")


class Spool:
    """One worker's spool file, exclusively locked while the worker lives."""

    def __init__(self, path: Path, max_bytes: int, fsync: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._max_bytes = max_bytes
        self._fsync = fsync
        self._file: BinaryIO = path.open("ab+")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # another live worker owns it?
        except BlockingIOError:
            self._file.close()
            raise
        self._size = self._file.seek(0, os.SEEK_END)

    @property
    def size(self) -> int:
        return self._size

    def append(self, records: list[bytes]) -> int:
        """Append in order; returns how many did not fit under the disk limit (dropped)."""
        chunks: list[bytes] = []
        kept = 0
        for data in records:
            need = _LENGTH.size + len(data)
            if self._size + need > self._max_bytes:
                break
            chunks += [_LENGTH.pack(len(data)), data]
            self._size += need
            kept += 1
        if chunks:
            self._file.write(b"".join(chunks))
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        return len(records) - kept

    def records(self) -> Iterator[tuple[int, bytes]]:
        """(offset after the record, record) from the start of the spool."""
        yield from read_records(self.path)

    def consume(self, offset: int) -> None:
        """Drop everything before `offset` (those records reached Redis): rewrite the rest, atomically."""
        with self.path.open("rb") as source:
            source.seek(offset)
            rest = source.read()
        temp = self.path.with_suffix(".tmp")
        temp.write_bytes(rest)
        os.replace(temp, self.path)
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = self.path.open("ab+")
        fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._size = len(rest)

    def close(self, remove_if_empty: bool = True) -> None:
        if remove_if_empty and self._size == 0:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()


def read_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """Records of a spool file; a torn last record (a crash mid-write) is ignored."""
    with path.open("rb") as source:
        offset = 0
        while True:
            header = source.read(_LENGTH.size)
            if len(header) < _LENGTH.size:
                return
            (length,) = _LENGTH.unpack(header)
            data = source.read(length)
            if len(data) < length:
                return
            offset += _LENGTH.size + length
            yield offset, data


def spool_paths(directory: Path, prefix: str) -> list[Path]:
    """Spool files of one stream in a folder (live workers' included: opening one as a Spool arbitrates)."""
    return sorted(directory.glob(f"{prefix}-*.spool"))


def ledger_paths(directory: Path, prefix: str) -> list[Path]:
    """Ledgers of one stream in a folder (live workers' included: opening one as a Ledger arbitrates)."""
    return sorted(directory.glob(f"{prefix}-*.ledger"))


_COUNTERS = struct.Struct("<QQ")  # answered, durable


class Ledger:
    """A worker's answered/durable counters (see above), exclusively locked while the worker lives."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another live worker owns it?
        except BlockingIOError:
            os.close(self._fd)
            raise
        if os.fstat(self._fd).st_size < _COUNTERS.size:
            os.ftruncate(self._fd, _COUNTERS.size)
        self._map = mmap.mmap(self._fd, _COUNTERS.size)

    def read(self) -> tuple[int, int]:
        """(answered, durable)."""
        answered, durable = _COUNTERS.unpack_from(self._map)
        return int(answered), int(durable)

    @property
    def lost(self) -> int:
        """Answered records that reached neither Redis nor the spool (nonzero only after a crash)."""
        answered, durable = self.read()
        return max(answered - durable, 0)

    def set(self, answered: int, durable: int) -> None:
        _COUNTERS.pack_into(self._map, 0, answered, durable)

    def close(self, remove: bool = False) -> None:
        self._map.close()
        if remove:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
