"""Reading what the service wrote to Redis Streams, which it does asynchronously by design."""

from __future__ import annotations

import time
from typing import Any

import redis


def wait_for_stream(client: redis.Redis, stream: str, count: int, timeout: float = 10.0) -> list[Any]:
    """Entries of a stream once it holds `count` (the writer is asynchronous by design)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.xlen(stream) >= count:
            break
        time.sleep(0.02)
    return client.xrange(stream)
