"""The serving image, without Docker: the Dockerfile's `serve` extra in a fresh venv serves a request.

No Docker engine runs on these machines, so this installs exactly what the Dockerfile installs into
an empty virtualenv, starts uvicorn from it on 127.0.0.1 the way the image's CMD does, and ranks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipelines.server import free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]


def test_the_dockerfile_installs_only_the_serve_extra() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert 'pip install --no-cache-dir -c requirements.lock ".[serve]"' in dockerfile
    assert "USER cascade" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "torch" not in dockerfile.split("RUN pip install", 1)[1].split("\n")[0]


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project installed as the Dockerfile does: `pip install -c requirements.lock ".[serve]"`."""
    build = tmp_path_factory.mktemp("image")
    source = build / "app"
    source.mkdir()
    for name in ("pyproject.toml", "requirements.lock", "cascade_cli.py"):  # the Dockerfile's COPY lines
        shutil.copy(ROOT / name, source / name)
    for package in ("contracts", "service", "archive"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = build / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", "requirements.lock", ".[serve]"],
        cwd=source,
        check=True,
        timeout=900,
    )
    return env_dir


@pytest.fixture(scope="module")
def image_server(serve_venv: Path, store: Path, redis_url: str) -> Iterator[str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CASCADE_", "PYTHON"))},
        "CASCADE_STORE": str(store),
        "REDIS_URL": redis_url,
        "CASCADE_DECISION_STREAM": "test:image:decisions",
    }
    command = [
        str(serve_venv / "bin" / "uvicorn"),
        "service.main:build",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
    ]
    # cwd outside the repo: imports must come from the venv, not from the working tree.
    process = subprocess.Popen(command, cwd=serve_venv, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, base)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.e2e
def test_serve_extra_alone_has_no_torch(serve_venv: Path) -> None:
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') is None else 1)"

    result = subprocess.run([str(serve_venv / "bin" / "python"), "-c", probe], check=False)

    assert result.returncode == 0, "torch is installed in the serving environment"


@pytest.mark.e2e
def test_serve_extra_alone_serves_a_rank_request(
    image_server: str, make_request: Callable[..., dict[str, Any]]
) -> None:
    body = make_request(n_candidates=1000, k=10)

    response = httpx.post(f"{image_server}/v1/rank", json=body, timeout=10)

    assert response.status_code == 200, response.text
    served = [item["id"] for item in response.json()["items"]]
    assert len(served) == 10
    assert set(served) <= set(body["candidates"]["ids"])
