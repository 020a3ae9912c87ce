"""The archiver as a child process of `cascade serve` (the embedded default): started after the embedded
Redis, stopped by its PID before it, so what it holds is written and acknowledged first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def start_archiver(redis_url: str) -> subprocess.Popen[bytes]:
    """`cascade archive` against `redis_url`, with the rest of its settings from this environment."""
    env = {**os.environ, "CASCADE_REDIS_URL": redis_url}
    env.pop("REDIS_URL", None)  # the embedded server's URL wins over a stale one
    return subprocess.Popen([sys.executable, "-m", "cascade_cli", "archive"], env=env)


def stop_archiver(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """SIGTERM (it flushes, acknowledges and exits), SIGKILL after the grace; by PID, never by name."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
