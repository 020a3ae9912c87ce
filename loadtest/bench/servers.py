"""The servers a benchmark run measures, each started on 127.0.0.1 and always stopped."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadtest.baselines.naive_fastapi import CHECKPOINT_ENV
from loadtest.run import HOST, free_port, start_server, stop_server, wait_ready


@contextlib.contextmanager
def cascade_serve(store: Path, workers: int, log_decisions: bool, logs: Path) -> Iterator[int]:
    """`cascade serve` with its spool (and embedded Redis, if no REDIS_URL) in a temporary folder; yields the port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        env = {
            "CASCADE_EMBEDDED_REDIS_DIR": str(Path(tmp) / "redis"),
            "CASCADE_LOG_SPOOL_DIR": str(Path(tmp) / "spool"),
            "CASCADE_LOG_DECISIONS": "true" if log_decisions else "false",
        }
        log = logs / f"cascade-w{workers}-{'log' if log_decisions else 'nolog'}.log"
        # With REDIS_URL set, that server takes the decision log; without, an embedded one in `tmp`.
        server = start_server(store, port, workers, None, log, env)
        try:
            wait_ready(server, f"http://{HOST}:{port}", timeout_s=120)
            yield port
        finally:
            stop_server(server, grace_s=20)


@contextlib.contextmanager
def naive_baseline(checkpoint: Path, logs: Path) -> Iterator[int]:
    """The naive FastAPI + pydantic + torch baseline under uvicorn (one worker); yields the port."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "loadtest.baselines.naive_fastapi:app",
        "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    env = {**os.environ, CHECKPOINT_ENV: str(checkpoint)}
    with (logs / "baseline.log").open("wb") as sink:
        server = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_ready(server, f"http://{HOST}:{port}", timeout_s=120)
        yield port
    finally:
        stop_server(server, grace_s=20)
