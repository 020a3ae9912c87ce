"""How an HTTP server treats hostile connections: the probe behind the server choice (RELIABILITY.md).

    python -m loadtest.connection_probe            # granian, hypercorn and uvicorn on a trivial ASGI app

Each server runs a minimal ASGI app (it reads the whole body, answers 200 with its length) on a free
loopback port, with a 5 s read/header timeout where the server has one; then six probes: a connection
that sends nothing, headers that never finish, a body that stops short, an idle keep-alive connection
after one response, a 4 MB header, and 500 headers. It prints what each server did (closed after how
long, or the status line it answered). The servers are stopped by their PIDs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.server import HOST, free_port

APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(size).encode()})
"""
WAIT_S = 8.0
TIMEOUT_S = 5


def _commands(port: int) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    return {
        "granian": [
            str(bin_dir / "granian"),
            "--interface",
            "asgi",
            "--host",
            HOST,
            "--port",
            str(port),
            "--http",
            "1",
            "--http1-header-read-timeout",
            str(TIMEOUT_S * 1000),
            "--log-level",
            "warning",
            "app:app",
        ],
        "hypercorn": [
            str(bin_dir / "hypercorn"),
            "app:app",
            "-b",
            f"{HOST}:{port}",
            "--read-timeout",
            str(TIMEOUT_S),
            "--keep-alive",
            str(TIMEOUT_S),
            "--log-level",
            "warning",
        ],
        "uvicorn": [
            str(bin_dir / "uvicorn"),
            "app:app",
            "--host",
            HOST,
            "--port",
            str(port),
            "--http",
            "httptools",
            "--timeout-keep-alive",
            str(TIMEOUT_S),
            "--log-level",
            "warning",
        ],
    }


def _outcome(conn: socket.socket) -> str:
    conn.settimeout(WAIT_S)
    started = time.monotonic()
    try:
        data = conn.recv(65536)
    except TimeoutError:
        return f"still open after {WAIT_S:.0f} s"
    except OSError as exc:
        return f"connection error {exc.errno}"
    finally:
        conn.close()
    line = data.split(b"\r\n", 1)[0].decode(errors="replace") or "closed, no answer"
    return f"{line} after {time.monotonic() - started:.1f} s"


def _probe(port: int) -> dict[str, str]:
    def connect() -> socket.socket:
        return socket.create_connection((HOST, port), timeout=WAIT_S)

    results = {}
    results["silent connection"] = _outcome(connect())
    conn = connect()
    conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    results["headers never finish"] = _outcome(conn)
    conn = connect()
    conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
    results["body stops short"] = _outcome(conn)
    conn = connect()
    conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)
    conn.recv(65536)
    results["idle keep-alive after a response"] = _outcome(conn)
    conn = connect()
    with contextlib.suppress(OSError):
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 << 20) + b"\r\n\r\n")
    results["4 MB header"] = _outcome(conn)
    conn = connect()
    conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500)) + b"\r\n")
    results["500 headers"] = _outcome(conn)
    return results


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="cascade-probe-"))
    (folder / "app.py").write_text(APP)
    for name in ("granian", "hypercorn", "uvicorn"):
        port = free_port()
        command = _commands(port)[name]
        # Its own session: stopping the group stops the server's worker processes too.
        server = subprocess.Popen(
            command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
                    break
                time.sleep(0.1)
            print(f"== {name}")
            for probe, result in _probe(port).items():
                print(f"  {probe:34s} {result}")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
