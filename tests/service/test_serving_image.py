"""The serving image, without Docker: one list of what it carries, and that list installed and served.

No Docker engine runs on these machines, so the e2e tests here do what the Dockerfile does: copy the
paths of deploy/image-contents.txt into an empty folder, install them into a fresh venv from the
same lock with the same pip line, then run the Dockerfile's own ENTRYPOINT + CMD with its ENV (host
and port moved to loopback), its HEALTHCHECK command, a rank request and a SIGTERM. The fast tests
hold the Dockerfile and .dockerignore to that same list.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
import venv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from pipelines.server import free_port, wait_ready
from tests.deploy.image import Dockerfile, image_contents
from tests.redis_streams import stream_length

ROOT = Path(__file__).resolve().parents[2]
PIP_LINE = 'pip install -c requirements.lock ".[serve]"'


def test_the_dockerfile_copies_exactly_the_image_contents() -> None:
    dockerfile = Dockerfile.read(ROOT / "Dockerfile")

    assert sorted(dockerfile.copied) == sorted(image_contents())


def test_the_dockerignore_allows_exactly_the_image_contents() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    allowed = [line[1:] for line in lines if line.startswith("!")]

    assert "*" in lines  # an allow-list: everything else (.venv, store, secrets) stays out of the context
    assert sorted(allowed) == sorted(image_contents())


def test_the_dockerfile_installs_the_serve_extra_from_the_lock_and_runs_cascade_serve_as_non_root() -> None:
    dockerfile = Dockerfile.read(ROOT / "Dockerfile")

    assert PIP_LINE in dockerfile.text
    assert "torch" not in dockerfile.text.split(PIP_LINE, 1)[1].split("\n")[0]
    assert dockerfile.text.count("FROM ") >= 2  # multi-stage: the runtime stage carries the venv only
    assert re.search(r"^USER 10001", dockerfile.text, re.MULTILINE)
    # The service starts through `cascade serve`, whatever HTTP server that runs; settings come from ENV.
    assert dockerfile.argv == ["cascade", "serve"]
    assert {"CASCADE_HOST", "CASCADE_PORT", "CASCADE_WORKERS", "CASCADE_STORE"} <= set(dockerfile.env)
    assert dockerfile.healthcheck[0] == "python"


def test_the_image_contents_hold_no_part_that_imports_torch() -> None:
    assert {"contracts", "service"} <= set(image_contents())
    assert not {"models", "export", "pipelines", "loadtest"} & set(image_contents())


@pytest.fixture(scope="module")
def serve_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the image contents installed as the Dockerfile's build stage does."""
    build = tmp_path_factory.mktemp("image")
    source = build / "src"
    source.mkdir()
    for name in image_contents():
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(origin, source / name)
    env_dir = build / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", *shlex.split(PIP_LINE)]
    subprocess.run([*pip, "--quiet"], cwd=source, check=True, timeout=900)
    shutil.rmtree(source)  # the runtime stage has the venv only: serving must not need the sources
    return env_dir


@dataclass(frozen=True)
class ImageServer:
    base: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    workdir: Path
    stream: str


@pytest.fixture(scope="module")
def image_server(
    serve_venv: Path, store: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ImageServer]:
    dockerfile = Dockerfile.read(ROOT / "Dockerfile")
    port = free_port()
    runtime_dir = tmp_path_factory.mktemp("image-run")
    workdir = runtime_dir / "workdir"  # the image's WORKDIR: nothing may be written here
    workdir.mkdir()
    stream = f"test:image:{uuid.uuid4().hex[:8]}:decisions"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("CASCADE_", "PYTHON", "REDIS"))}
    env = {
        **inherited,
        **dockerfile.env,
        "PATH": f"{serve_venv / 'bin'}:{os.environ['PATH']}",
        # What `docker run -e` / the Deployment would set; loopback instead of 0.0.0.0 on this machine.
        "CASCADE_HOST": "127.0.0.1",
        "CASCADE_PORT": str(port),
        "CASCADE_WORKERS": "1",
        "CASCADE_STORE": str(store),
        "CASCADE_LOG_SPOOL_DIR": str(runtime_dir / "spool"),
        "REDIS_URL": redis_url,
        "CASCADE_DECISION_STREAM": stream,
    }
    process = subprocess.Popen(dockerfile.argv, cwd=workdir, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, base)
        yield ImageServer(base, process, env, workdir, stream)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.e2e
def test_the_image_venv_has_no_torch(serve_venv: Path) -> None:
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') is None else 1)"

    result = subprocess.run([str(serve_venv / "bin" / "python"), "-c", probe], check=False)

    assert result.returncode == 0, "torch is installed in the serving environment"


@pytest.mark.e2e
def test_the_image_serves_answers_its_healthcheck_and_stops_cleanly_on_sigterm(
    image_server: ImageServer, make_request: Callable[..., dict[str, Any]], redis_url: str
) -> None:
    body = make_request(n_candidates=1000, k=10)

    response = httpx.post(f"{image_server.base}/v1/rank", json=body, timeout=10)
    health = subprocess.run(Dockerfile.read(ROOT / "Dockerfile").healthcheck, env=image_server.env, check=False)
    image_server.process.send_signal(signal.SIGTERM)
    status = image_server.process.wait(timeout=30)  # the Deployment's grace period

    assert response.status_code == 200, response.text
    served = [item["id"] for item in response.json()["items"]]
    assert len(served) == 10
    assert set(served) <= set(body["candidates"]["ids"])
    assert health.returncode == 0
    assert status == 0
    # The decision was flushed to Redis before the process exited, and a read-only root would do:
    # nothing was written to the working directory.
    client = redis.Redis.from_url(redis_url)
    try:
        assert stream_length(client, image_server.stream) >= 1
    finally:
        client.close()
    assert list(image_server.workdir.iterdir()) == []
