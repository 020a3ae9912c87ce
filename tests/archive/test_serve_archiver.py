"""`cascade serve` with the embedded default runs the archiver as its child: decisions served over HTTP
reach the lake while it serves, and the child stops with the parent."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from contracts.lake import dataset_files
from pipelines.server import cascade_serve


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the direct children of a process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append((int(entry.name), command))
    return found


@pytest.mark.e2e
@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="the embedded default is what is tested")
def test_cascade_serve_archives_the_embedded_redis_in_a_child_process(
    store: Path, tmp_path: Path, make_request: Callable[..., dict[str, Any]]
) -> None:
    lake = tmp_path / "lake"
    env = {
        "CASCADE_EMBEDDED_REDIS_DIR": str(tmp_path / "redis"),
        "CASCADE_LOG_SPOOL_DIR": str(tmp_path / "spool"),
        "CASCADE_ARCHIVE_LAKE": str(lake),
        "CASCADE_ARCHIVE_FLUSH_SECONDS": "0.2",
    }
    with cascade_serve(store, env, tmp_path / "server.log", workers=1) as base:
        for _ in range(3):
            assert httpx.post(f"{base}/v1/rank", json=make_request(n_candidates=20, k=2), timeout=30).status_code == 200
        deadline = time.monotonic() + 60  # hang guard: the archiver flushes every 0.2 s
        while sum(pq.ParquetFile(f).metadata.num_rows for f in dataset_files(lake, "decisions")) < 3:
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()[-2000:]
            time.sleep(0.2)
        parents = [pid for pid, command in _children(os.getpid()) if "cascade_cli serve" in command]
        (archiver,) = [pid for parent in parents for pid, command in _children(parent) if "archive" in command]
    assert not Path(f"/proc/{archiver}").exists() or "Z" in Path(f"/proc/{archiver}/stat").read_text().split()[2]
