"""A loopback TCP proxy in front of a real Redis that can lose the reply to a command Redis applied.

This is the gap an idempotent writer must close: the command reached Redis and took effect, but the
client sees a dropped connection and believes it failed, so it retries or replays.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from urllib.parse import urlparse


class ReplyDroppingProxy:
    """Forwards 127.0.0.1:<port> to a Redis URL (unix or tcp); `drop_reply_to(b"EVALSHA")` arms it."""

    def __init__(self, redis_url: str) -> None:
        self._target = urlparse(redis_url)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}"
        self._armed: bytes | None = None
        self._lock = threading.Lock()
        self.dropped = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_reply_to(self, command: bytes) -> None:
        """The next request holding `command` reaches Redis; its reply is discarded and the connection cut."""
        with self._lock:
            self._armed = command

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _connect(self) -> socket.socket:
        if self._target.scheme == "unix":
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self._target.path)
            return upstream
        return socket.create_connection((self._target.hostname or "127.0.0.1", self._target.port or 6379))

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._connect()
            doomed = threading.Event()  # this connection's next reply is to be lost
            threading.Thread(target=self._requests, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        while chunk := _recv(client):
            with self._lock:
                if self._armed is not None and self._armed in chunk:
                    self._armed = None
                    doomed.set()
            upstream.sendall(chunk)
        upstream.close()

    def _replies(self, upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        while chunk := _recv(upstream):
            if doomed.is_set():
                self.dropped += 1
                break  # Redis applied the command; the client never hears so
            client.sendall(chunk)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""
