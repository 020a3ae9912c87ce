"""pipelines/server.py against a real `cascade serve` on 127.0.0.1: ready, activated over HTTP, stopped."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from pipelines.server import activate, cascade_serve, served_version, wait_for_version
from tests.versions import add_version, private_store


@pytest.mark.e2e
def test_a_version_activated_through_the_admin_api_serves_and_a_refused_one_does_not(
    store: Path, redis_url: str, tmp_path: Path
) -> None:
    own = private_store(store, tmp_path / "store")
    add_version(own, "next")
    namespace = f"test:{uuid.uuid4().hex[:8]}"
    env = {
        "REDIS_URL": redis_url,
        "CASCADE_ROUTING_NAMESPACE": namespace,
        "CASCADE_DECISION_STREAM": f"{namespace}:decisions",
        "CASCADE_ADMIN_TOKEN": "secret",
    }

    with cascade_serve(own, env, tmp_path / "server.log", workers=1) as base:
        activate(base, "demo", "next", "secret")
        wait_for_version(base, "demo", "next")
        serving = served_version(base, "demo")
        with pytest.raises(RuntimeError, match="HTTP 4"):
            activate(base, "demo", "no-such-version", "secret")
        with pytest.raises(RuntimeError, match="HTTP 403"):
            activate(base, "demo", "next", "wrong token")
        still = served_version(base, "demo")
        url = base

    assert serving == "next"
    assert still == "next"  # a refused activation changed nothing
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/healthz", timeout=2)  # stopped by its PID when the block ended
