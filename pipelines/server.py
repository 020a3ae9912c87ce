"""A real server on 127.0.0.1: start it, wait until `/readyz` says 200, stop it by its PID.

The one helper every workflow that needs a running service uses (the load test, the benchmark, the
latency script, the closed loop, the end-to-end tests), and the admin call that activates a version
through the service itself, so the answering worker verifies the bundle before routing changes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

HOST = "127.0.0.1"


class ServerNotReadyError(RuntimeError):
    """The server exited, or did not answer /readyz with 200, before the deadline."""


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now (the kernel picks; a short window remains)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def cascade_serve_command(store: Path, port: int, workers: int | None = None) -> list[str]:
    """`cascade serve` on 127.0.0.1 as a command line for this interpreter."""
    command = [sys.executable, "-m", "cascade_cli", "serve", "--store", str(store), "--host", HOST, "--port", str(port)]
    return command if workers is None else [*command, "--workers", str(workers)]


def start(command: Sequence[str], env: Mapping[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a server in its own session (Ctrl-C reaches only us; `stop` can end its whole group).

    `env` is added to this process's environment; output goes to `log` (or is inherited without one).
    """
    full_env = {**os.environ, **env}
    if log is None:
        return subprocess.Popen(list(command), env=full_env, start_new_session=True)
    with log.open("wb") as sink:
        return subprocess.Popen(
            list(command), env=full_env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(server: subprocess.Popen[bytes], url: str, timeout_s: float = 60.0) -> None:
    """Poll GET /readyz until 200; raise ServerNotReadyError if the server exits or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ServerNotReadyError(f"server exited with status {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2.0) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"  # 503 while the bundle loads
        except OSError as exc:
            last = type(exc).__name__  # not listening yet
        time.sleep(0.2)
    raise ServerNotReadyError(f"/readyz not 200 after {timeout_s:.0f} s (last: {last})")


def stop(server: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM (uvicorn drains, the decision log flushes), then SIGKILL the whole group after the grace."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            print(f"server ignored SIGTERM for {grace_s:.0f} s; killing it", file=sys.stderr)
    # Worker processes or a redis-server left behind by an unclean exit share the server's group.
    with contextlib.suppress(ProcessLookupError):  # the group is gone: the clean case
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


@contextlib.contextmanager
def running(
    command: Sequence[str],
    url: str,
    env: Mapping[str, str],
    log: Path | None = None,
    ready_s: float = 120.0,
    grace_s: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server that is ready while the block runs and stopped by its PID after it, however it ends."""
    server = start(command, env, log)
    try:
        wait_ready(server, url, ready_s)
        yield server
    finally:
        stop(server, grace_s)


@contextlib.contextmanager
def cascade_serve(
    store: Path,
    env: Mapping[str, str],
    log: Path | None = None,
    workers: int | None = None,
    ready_s: float = 120.0,
    grace_s: float = 30.0,
) -> Iterator[str]:
    """`cascade serve` on a free loopback port while the block runs; yields its base URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    with running(cascade_serve_command(store, port, workers), url, env, log, ready_s, grace_s):
        yield url


def served_version(base: str, policy: str) -> str | None:
    """The active version the answering worker serves (GET /v1/models)."""
    models = httpx.get(f"{base}/v1/models", timeout=5).json()
    for status in models["policies"]:
        if status["policy"] == policy and status["worker_serving"]:
            return str(status["worker_serving"]["active"])
    return None


def wait_for_version(base: str, policy: str, version: str, timeout_s: float = 60.0) -> None:
    """Poll until the answering worker serves `version` (an activation swaps asynchronously, by pub/sub)."""
    deadline = time.monotonic() + timeout_s
    while served_version(base, policy) != version:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service did not swap to {version} within {timeout_s:.0f} s")
        time.sleep(0.2)


def activate(base: str, policy: str, version: str, token: str, timeout_s: float = 60.0) -> None:
    """Activate a published version through the admin API (the worker verifies the bundle first)."""
    answer = httpx.post(
        f"{base}/v1/admin/policies/{policy}/activate",
        json={"version": version},
        headers={"authorization": f"Bearer {token}"},
        timeout=timeout_s,
    )
    if answer.status_code != 200:
        raise RuntimeError(f"activating {policy}/{version} failed: HTTP {answer.status_code} {answer.text}")
