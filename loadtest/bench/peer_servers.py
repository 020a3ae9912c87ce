"""Every server of the comparison, started the same way: pinned, on 127.0.0.1, one process tree, stopped by PID.

cascade-serve starts through pipelines/server.py's `cascade_serve_command` (whatever HTTP server `cascade
serve` runs); the peers through their modules in loadtest/peers; the naive baseline as before. Each is
seeded with the same exploration seed, so the correctness gate can compare their answers exactly.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loadtest.baselines.naive_fastapi import CHECKPOINT_ENV
from loadtest.bench.pinning import on_core
from loadtest.peers.bundle import POLICY_ENV, SEED_ENV, STORE_ENV
from pipelines.server import HOST, ServerNotReadyError, cascade_serve_command, free_port, start, stop

BY_ID, INLINE, TENSORS = "json-by-id", "json-inline", "msgpack-tensor"
CASCADE_ON = "cascade-serve (logging on)"
CASCADE_OFF = "cascade-serve (logging off)"
FASTAPI = "hand-tuned FastAPI route"
LITSERVE = "LitServe"
RAY = "Ray Serve (defaults)"
RAY_BATCH = "Ray Serve (@serve.batch)"
NAIVE = "naive baseline"


@dataclass(frozen=True)
class Context:
    """What every server of one run shares."""

    store: Path
    checkpoint: Path  # the naive baseline's torch weights (the same policy as the bundle)
    logs: Path
    redis_url: str
    seed: int
    core: int | None  # the server's core, None unpinned


@dataclass(frozen=True)
class ServerSpec:
    name: str
    encodings: tuple[str, ...]  # the request encodings it takes (the gate re-encodes for the others)
    needs_peers: bool  # needs the peers extra (LitServe, Ray)
    start: Callable[[Context], contextlib.AbstractContextManager[int]]


def _wait(server_poll: Callable[[], int | None], url: str, ready: Callable[[bytes], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server_poll() is not None:
            raise ServerNotReadyError(f"{url}: the server exited before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as answer:
                if answer.status == 200 and ready(answer.read()):
                    return
                last = "not yet routed"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise ServerNotReadyError(f"{url} not ready after {timeout_s:.0f} s (last: {last})")


@contextlib.contextmanager
def _serving(
    command: list[str],
    env: dict[str, str],
    log: Path,
    ready_path: str = "/readyz",
    ready: Callable[[bytes], bool] = lambda _: True,
    port: int = 0,
) -> Iterator[int]:
    server = start(command, env, log)
    try:
        _wait(server.poll, f"http://{HOST}:{port}{ready_path}", ready, timeout_s=180)
        yield port
    finally:
        stop(server, grace_s=30)


@contextlib.contextmanager
def _cascade(ctx: Context, log_decisions: bool) -> Iterator[int]:
    with cascade_server(ctx, log_decisions) as port:
        yield port


@contextlib.contextmanager
def cascade_server(
    ctx: Context, log_decisions: bool, extra_env: dict[str, str] | None = None, tag: str = "", tree: Path | None = None
) -> Iterator[int]:
    """cascade-serve, 1 worker, pinned, on the run's Redis; yields its port. An A/B variant gets `extra_env`,
    or runs from another source `tree` (its folder first on the path: `python -m` puts the cwd first)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        env = {
            "REDIS_URL": ctx.redis_url,
            "CASCADE_LOG_SPOOL_DIR": str(Path(tmp) / "spool"),
            "CASCADE_LOG_DECISIONS": "true" if log_decisions else "false",
            "CASCADE_EXPLORATION_SEED": str(ctx.seed),
            # The two cascade-serve servers share the standalone Redis: each its own routing keys.
            "CASCADE_ROUTING_NAMESPACE": f"bench-{port}",
            # Trimmed as in production: untrimmed, minutes of load at N = 5,000 grow Redis by gigabytes.
            "CASCADE_LOG_TRIM": "maxlen",
            "CASCADE_LOG_TRIM_THRESHOLD": "20000",
            **(extra_env or {}),
        }
        command = cascade_serve_command(ctx.store, port, workers=1)
        if tree is not None:
            command = ["env", "-C", str(tree), f"PYTHONPATH={tree}", *command]
        command = on_core(command, ctx.core)
        log = ctx.logs / f"cascade-{'log' if log_decisions else 'nolog'}{tag}.log"
        with _serving(command, env, log, port=port):
            yield port


def _peer_env(ctx: Context) -> dict[str, str]:
    return {STORE_ENV: str(ctx.store), POLICY_ENV: "demo", SEED_ENV: str(ctx.seed)}


@contextlib.contextmanager
def _uvicorn(ctx: Context, app: str, env: dict[str, str], log: str) -> Iterator[int]:
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", app, "--host", HOST, "--port", str(port),
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    with _serving(on_core(command, ctx.core), env, ctx.logs / log, port=port):
        yield port


@contextlib.contextmanager
def _litserve(ctx: Context) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "loadtest.peers.litserve_api", "--host", HOST, "--port", str(port)]
    with _serving(on_core(command, ctx.core), _peer_env(ctx), ctx.logs / "litserve.log", port=port):
        yield port


@contextlib.contextmanager
def _ray(ctx: Context, batch: bool) -> Iterator[int]:
    port = free_port()
    command = [
        sys.executable, "-m", "loadtest.peers.ray_serve_app", "--store", str(ctx.store), "--host", HOST,
        "--port", str(port), "--seed", str(ctx.seed), *(["--batch"] if batch else []),
    ]  # fmt: skip
    # Serve's proxy lists an application's route once it is deployed.
    with _serving(
        on_core(command, ctx.core),
        {"RAY_USAGE_STATS_ENABLED": "0"},
        ctx.logs / f"ray{'-batch' if batch else ''}.log",
        ready_path="/-/routes",
        ready=lambda body: b"/v1/rank" in body,
        port=port,
    ):
        yield port


SERVERS: list[ServerSpec] = [
    ServerSpec(CASCADE_ON, (BY_ID, INLINE, TENSORS), False, lambda ctx: _cascade(ctx, True)),
    ServerSpec(CASCADE_OFF, (BY_ID, INLINE, TENSORS), False, lambda ctx: _cascade(ctx, False)),
    ServerSpec(
        FASTAPI,
        (BY_ID, INLINE, TENSORS),
        False,
        lambda ctx: _uvicorn(ctx, "loadtest.peers.fastapi_route:app", _peer_env(ctx), "fastapi-route.log"),
    ),
    ServerSpec(LITSERVE, (BY_ID, INLINE), True, _litserve),
    ServerSpec(RAY, (BY_ID, INLINE), True, lambda ctx: _ray(ctx, False)),
    ServerSpec(RAY_BATCH, (BY_ID, INLINE), True, lambda ctx: _ray(ctx, True)),
    ServerSpec(
        NAIVE,
        (INLINE,),
        False,
        lambda ctx: _uvicorn(
            ctx,
            "loadtest.baselines.naive_fastapi:app",
            {CHECKPOINT_ENV: str(ctx.checkpoint), SEED_ENV: str(ctx.seed)},
            "naive.log",
        ),
    ),
]
