"""Running the app under an HTTP server, with the connection limits as settings (`cascade serve`).

granian is the default because it enforces, in the server, what an ASGI app cannot: a deadline for a
request's headers (which also closes idle keep-alive connections and ones that never send a byte),
the header section's size, and the header count (its parser's 100). uvicorn, measured on the same
probes, kept silent, slow-header and slow-body connections open indefinitely and buffered a 4 MB
header (RELIABILITY.md); it stays selectable (CASCADE_SERVER=uvicorn) for comparison. The body's
arrival and the in-progress limit are enforced in the app, the same under either server.
"""

from __future__ import annotations

import math

from service.settings import Settings

APP_FACTORY = "service.main:build"


def run_server(settings: Settings, host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish first."""
    if settings.server == "uvicorn":
        import uvicorn

        uvicorn.run(
            APP_FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            log_level="info",
            access_log=False,
            timeout_keep_alive=math.ceil(settings.header_read_timeout_seconds),
        )
        return
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings

    Granian(
        APP_FACTORY,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        factory=True,
        workers=workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.header_read_timeout_seconds * 1000),
            keep_alive=True,
            max_buffer_size=settings.max_header_bytes,
        ),
        log_access=False,
        workers_kill_timeout=30,
        respawn_failed_workers=True,  # a worker killed (OOM, kill -9) is replaced, not lost until restart
    ).serve()
