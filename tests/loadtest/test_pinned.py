"""The pinned logging-cost benchmark end to end at toy sizes, and its BENCHMARKS.md section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.e2e
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="pins the server and the load to different cores")
@pytest.mark.parametrize(
    ("mode", "section"),
    [
        ([], "logging-pinned"),
        (["--simultaneous"], "logging-simultaneous"),
        (["--simultaneous", "--aa"], "logging-simultaneous-aa"),
    ],
)
def test_pinned_bench_measures_every_size_without_errors(tmp_path: Path, mode: list[str], section: str) -> None:
    results, page = tmp_path / "pinned.json", tmp_path / "BENCH.md"
    command = [
        sys.executable, "-m", "loadtest.bench.pinned", "--sizes", "20,60", "--rounds", "2", "--seconds", "1",
        "--per-size", "2", "--train-steps", "5", "--results", str(results), "--markdown", str(page), *mode,
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout + run.stderr

    written = json.loads(results.read_text())
    assert (written["simultaneous"], written["aa"]) == ("--simultaneous" in mode, "--aa" in mode)
    sizes = written["sizes"]
    assert [s["n"] for s in sizes] == [20, 60]
    assert all(r["errors"] == 0 and r["on"] > 0 and r["off"] > 0 for s in sizes for r in s["rounds"])
    assert all(r["on_cpu_ms"] > 0 and r["off_cpu_ms"] > 0 for s in sizes for r in s["rounds"])
    text = page.read_text()
    assert f"<!-- {section}:start -->" in text and "| 60 | 2 |" in text
