"""A local append-only spool for decision records Redis could not take.

Records are length-prefixed (4-byte big-endian) byte strings, appended in order and fsynced per
batch when asked. The writer replays the spool to Redis, in order, before it writes anything new,
so each worker's records reach the stream in the order they were served. A spool whose worker died
is claimed (flock) and replayed by the next worker that starts.
"""

from __future__ import annotations

import fcntl
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
