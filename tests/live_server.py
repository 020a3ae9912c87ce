"""Real servers on 127.0.0.1 for end-to-end tests: a free port, and waiting until /readyz says 200."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(base: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    """Poll /readyz until 200; fail the test if the process exits first or the time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited during start-up"
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server was not ready within {seconds} s")
