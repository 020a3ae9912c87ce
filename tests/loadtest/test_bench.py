"""The benchmark harness end to end at toy sizes: every server really runs, every row has answers, no errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.e2e
def test_bench_measures_every_configuration_without_errors(tmp_path: Path) -> None:
    out, plot, results = tmp_path / "BENCH.md", tmp_path / "bench.png", tmp_path / "results.json"
    command = [
        sys.executable, "-m", "loadtest.bench.run", "--sizes", "20,60", "--seconds", "0.5",
        "--concurrency", "2", "--per-size", "2", "--train-steps", "5", "--logging-rounds", "2",
        "--out", str(out), "--plot", str(plot), "--results", str(results),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout + run.stderr

    rows = json.loads(results.read_text())["rows"]
    configs = {(r["config"], r["encoding"]) for r in rows}
    for encoding in ("json-inline", "json-by-id", "msgpack-tensor"):
        assert ("cascade-serve 1 worker", encoding) in configs
    assert ("naive baseline", "json-inline") in configs
    assert ("cascade-serve 2 workers", "json-by-id") in configs
    http_rows = [r for r in rows if not r["config"].startswith("limit")]
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in http_rows), http_rows
    logging = json.loads(results.read_text())["logging_rounds"]
    assert len(logging) == 2 and all(r["on"] > 0 and r["off"] > 0 and r["errors"] == 0 for r in logging), logging
    text = out.read_text()
    assert "| logging on costs ≤ 5 % throughput |" in text
    assert "| by id: 1-worker throughput ≥ 0.80 × limit |" in text
    assert "naive baseline" in text
    assert plot.stat().st_size > 0
