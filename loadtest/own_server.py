"""Plain `locust -f loadtest/locustfile.py --headless` without --host: a server of the run's own.

Locust's init event starts `cascade serve` on 127.0.0.1 (a free port, its own embedded Redis, a copy
of LOADTEST_STORE with a second version for the operator) and points the run at it; `quitting` stops
it by its PID, whole process group included, so no server or redis-server outlives the run.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
from pathlib import Path

from loadtest.store_copy import copy_with_extra_version
from pipelines.server import HOST, cascade_serve_command, free_port, start, stop, wait_ready

READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0


class OwnServer:
    """One `cascade serve` for one Locust run."""

    def __init__(self, store: Path, workers: int, admin_token: str | None) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="cascade-locust-")
        root = Path(self._scratch.name)
        served = copy_with_extra_version(store.resolve(), root / "store")
        port = free_port()
        self.url = f"http://{HOST}:{port}"
        env = {
            "CASCADE_EMBEDDED_REDIS_DIR": str(root / "redis"),
            "CASCADE_LOG_SPOOL_DIR": str(root / "spool"),
            **({"CASCADE_ADMIN_TOKEN": admin_token} if admin_token else {}),
        }
        # REDIS_URL, if set, is passed on: the server then logs into that Redis instead.
        self.log = root / "server.log"
        self._process: subprocess.Popen[bytes] | None = start(
            cascade_serve_command(served, port, workers), env, self.log
        )
        atexit.register(self.stop)
        try:
            wait_ready(self._process, self.url, READY_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server (SIGTERM, then its group) and remove its scratch folder; idempotent."""
        if self._process is not None:
            stop(self._process, STOP_GRACE_S)
            self._process = None
            self._scratch.cleanup()


def from_environment() -> OwnServer:
    """The server the environment describes: LOADTEST_STORE (store), LOADTEST_WORKERS (1)."""
    store = Path(os.environ.get("LOADTEST_STORE", "store"))
    return OwnServer(store, int(os.environ.get("LOADTEST_WORKERS", "1")), os.environ.get("LOADTEST_ADMIN_TOKEN"))
