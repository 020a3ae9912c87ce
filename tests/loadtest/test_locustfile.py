"""The load-test harness end to end: a real server, real Locust users, a short run, the stats CSV."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.run import FEEDBACK, RANK, read_stats


@pytest.mark.e2e
def test_short_load_test_ranks_and_sends_feedback_without_failures(store: Path, tmp_path: Path) -> None:
    # 2 users with weights 3:1 spawn one RankUser and one FeedbackUser.
    command = [
        sys.executable, "-m", "loadtest.run", "--store", str(store),
        "--seconds", "3", "--users", "2", "--spawn-rate", "2", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = tmp_path.iterdir()
    stats = read_stats(run_dir / "stats")
    assert stats[RANK].requests > 0
    assert stats[FEEDBACK].requests > 0
    assert stats["Aggregated"].failures == 0
    # Every ranking served under load reached the decision stream.
    logged = re.search(r"logged by the server: (\d+) decision records", result.stdout)
    assert logged is not None, result.stdout
    assert int(logged.group(1)) == stats[RANK].requests
