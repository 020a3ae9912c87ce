"""schemathesis over openapi.yaml against a real `cascade serve`, with the admin token and every check.

Bounded (15 examples per operation and phase, fixed seed) so it stays a small part of the suite; a
failure prints schemathesis' own report with a curl line that reproduces it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.server import cascade_serve
from tests.server_env import isolated_env
from tests.versions import add_version, private_store

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"


@pytest.mark.e2e
def test_schemathesis_finds_no_failure_in_the_published_contract(store: Path, redis_url: str, tmp_path: Path) -> None:
    own = private_store(store, tmp_path / "store")
    add_version(own, "v2")  # something to activate and roll back to
    env = isolated_env(redis_url, f"test:{tmp_path.name}", tmp_path / "spool", CASCADE_ADMIN_TOKEN=TOKEN)
    with cascade_serve(own, env, log=tmp_path / "server.log", workers=1) as base:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "--config-file",
                str(ROOT / "tests" / "schemathesis.toml"),
                "run",
                str(ROOT / "openapi.yaml"),
                "--url",
                base,
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                "all",
                "--max-examples",
                "15",
                "--seed",
                "1",
                "--workers",
                "1",
                "--output-truncate",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # schemathesis writes its cache (.schemathesis/) in the working directory
            check=False,
        )

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "0 failures" in run.stdout or " passed" in run.stdout
