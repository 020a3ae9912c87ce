"""The servers a benchmark run measures, each started on 127.0.0.1 and always stopped."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadtest.baselines.naive_fastapi import CHECKPOINT_ENV
from pipelines.server import HOST, cascade_serve_command, free_port, running


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
        with running(cascade_serve_command(store, port, workers), f"http://{HOST}:{port}", env, log, grace_s=20):
            yield port


@contextlib.contextmanager
def naive_baseline(checkpoint: Path, logs: Path) -> Iterator[int]:
    """The naive FastAPI + pydantic + torch baseline under uvicorn (one worker); yields the port."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", "loadtest.baselines.naive_fastapi:app",
        "--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with running(
        command, f"http://{HOST}:{port}", {CHECKPOINT_ENV: str(checkpoint)}, logs / "baseline.log", grace_s=20
    ):
        yield port
