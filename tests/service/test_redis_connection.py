"""The service's Redis client against a real redis-server that restarts under it."""

from __future__ import annotations

import asyncio

from service.redis_connection import connect
from tests.redis_servers import RestartableRedis


def test_pooled_connections_that_a_restart_closed_are_reconnected_not_raised(own_redis: RestartableRedis) -> None:
    async def scenario() -> list[bool]:
        client = connect(own_redis.url)
        try:
            # Several connections in the pool at once, so some sit idle when the server goes away.
            await asyncio.gather(*(client.blpop(["never-pushed"], timeout=0.2) for _ in range(4)))
            own_redis.stop()
            own_redis.start()
            return list(await asyncio.gather(*(client.ping() for _ in range(4))))
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [True] * 4
