"""The load-test harness end to end: a real server, real Locust users, short runs, the stats it writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.phases import PHASES, SERVER
from loadtest.run import FEEDBACK, RANK, read_stats

MIX = "json-by-id:200:1,json-inline:200:1,msgpack-tensor:200:1"


def harness(
    store: Path, out: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "loadtest.run", "--store", str(store), "--out", str(out), *options]
    full_env = {**os.environ, "LOADTEST_MIX": MIX, "LOADTEST_OPERATOR_PAUSE_S": "0.5", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=full_env)


@pytest.mark.e2e
def test_a_short_run_ranks_every_kind_sends_feedback_swaps_versions_and_fails_nothing(
    store: Path, tmp_path: Path
) -> None:
    # 4 users: the operator (fixed), then rankers and viewers by weight 3:1 (2 and 1).
    result = harness(store, tmp_path, "--seconds", "6", "--users", "4", "--spawn-rate", "4")

    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = tmp_path.iterdir()
    stats = read_stats(run_dir / "stats")
    rank_rows = {name: row for name, row in stats.items() if name.startswith(RANK)}
    assert {name.split("[")[1].split()[0] for name in rank_rows} == {"json-by-id", "json-inline", "msgpack-tensor"}
    assert stats[FEEDBACK].requests > 0
    assert any(name.startswith("admin ") and row.requests > 0 for name, row in stats.items() if name != "admin models")
    assert {name for name, row in stats.items() if row.kind == SERVER} == set(PHASES)
    assert sum(row.failures for row in stats.values()) == 0
    assert (run_dir / "report.html").stat().st_size > 0
    rank = json.loads(Path(f"{run_dir / 'stats'}_rank.json").read_text())
    assert rank["requests"] == sum(row.requests for row in rank_rows.values())
    assert re.search(r"rank \(all kinds\): \d+ requests, [\d.]+/s, p50 \d+ ms p95 \d+ ms p99 \d+ ms", result.stdout)
    # Every ranking served under load, swaps included, reached the decision stream.
    logged = re.search(r"logged by the server: (\d+) decision records", result.stdout)
    assert logged is not None, result.stdout
    assert int(logged.group(1)) == rank["requests"]


@pytest.mark.e2e
def test_the_step_ramp_stops_at_the_first_step_whose_p99_exceeds_the_bound(store: Path, tmp_path: Path) -> None:
    # A bound no 200-candidate request meets on any machine: the first measured step crosses it.
    ramp = {
        "LOADTEST_RAMP_START_USERS": "1",
        "LOADTEST_RAMP_STEP_USERS": "1",
        "LOADTEST_RAMP_MAX_USERS": "3",
        "LOADTEST_RAMP_STEP_S": "4",
        "LOADTEST_RAMP_SETTLE_S": "1",
        "LOADTEST_RAMP_P99_MS": "0.001",
    }

    result = harness(store, tmp_path, "--ramp", "--no-operator", env=ramp)

    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = tmp_path.iterdir()
    verdict = json.loads(Path(f"{run_dir / 'stats'}_ramp.json").read_text())
    assert verdict["crossed_at"] is not None
    assert verdict["crossed_at"]["step"] == 0
    assert len(verdict["steps"]) == 1
    assert "rank p99 crossed 0 ms at" in result.stdout


@pytest.mark.e2e
def test_plain_locust_without_a_host_serves_the_store_itself_and_runs_bounded(store: Path, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
        "-u", "2", "-r", "2", "-t", "4s", "--csv", str(tmp_path / "stats"), "--only-summary",
    ]  # fmt: skip
    env = {**os.environ, "LOADTEST_STORE": str(store), "LOADTEST_MIX": MIX}
    env.pop("LOADTEST_ADMIN_TOKEN", None)

    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no --host given: serving http://127.0.0.1:" in result.stdout
    stats = read_stats(tmp_path / "stats")
    assert sum(row.requests for name, row in stats.items() if name.startswith(RANK)) > 0
    assert sum(row.failures for row in stats.values()) == 0
