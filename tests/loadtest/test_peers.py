"""The server comparison's correctness gate and harness, end to end with real servers on 127.0.0.1.

The peers that need the `peers` extra (LitServe, Ray Serve) are skipped when it is not installed: `make
test` never installs it. The hand-tuned route and the naive baseline need only the serve and train extras.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from loadtest.bench.gate import ask, compare, reference_answers
from loadtest.bench.peer_servers import CASCADE_ON, FASTAPI, LITSERVE, NAIVE, RAY, RAY_BATCH, SERVERS, Context
from loadtest.bench.pinning import standalone_redis
from loadtest.bench.workload import Workload, build_workload

SIZES = [20, 120]
SPECS = {spec.name: spec for spec in SERVERS}


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Context, Workload, list[str]]]:
    from loadtest.bench.run import build_bench_store
    from models.sim.config import SimConfig
    from models.sim.simulator import Simulator

    root = tmp_path_factory.mktemp("peers")
    store, logs = root / "store", root / "logs"
    logs.mkdir()
    checkpoint = build_bench_store(store, 12_000, train_steps=5)
    workload = build_workload(Simulator(replace(SimConfig(), n_items=12_000), seed=0), SIZES, per_size=3)
    names = json.loads(next((store / "demo").glob("*/manifest.json")).read_text())["fusion"]["names"]
    with standalone_redis(None) as redis_url:
        yield Context(store, checkpoint, logs, redis_url, seed=0, core=None), workload, names


def _gate(ctx: Context, workload: Workload, names: list[str], peer: str, peer_ctx: Context | None = None) -> list[str]:
    reference_spec, spec = SPECS[CASCADE_ON], SPECS[peer]
    with reference_spec.start(ctx) as reference_port:
        sequence, reference = reference_answers(
            reference_port, ctx.store, workload, SIZES, 1, reference_spec.encodings, names, per_size=3
        )
    with spec.start(peer_ctx or ctx) as port:
        got = ask(port, ctx.store, workload, sequence, spec.encodings, names)
    result = compare(peer, sequence, reference, got)
    assert result.explored >= 2
    return result.problems


@pytest.mark.e2e
@pytest.mark.parametrize("peer", [FASTAPI, NAIVE])
def test_a_peer_returns_cascade_serves_top_k_and_fusion_noise(
    bench: tuple[Context, Workload, list[str]], peer: str
) -> None:
    ctx, workload, names = bench

    assert _gate(ctx, workload, names, peer) == []


@pytest.mark.e2e
def test_the_gate_refuses_a_server_with_other_fusion_noise(bench: tuple[Context, Workload, list[str]]) -> None:
    ctx, workload, names = bench

    problems = _gate(ctx, workload, names, FASTAPI, peer_ctx=replace(ctx, seed=1))

    assert any("fusion weights differ" in p or "ids differ" in p or "scores differ" in p for p in problems), problems


@pytest.mark.e2e
@pytest.mark.parametrize("peer", [LITSERVE, RAY, RAY_BATCH])
def test_the_peers_extra_servers_pass_the_gate(bench: tuple[Context, Workload, list[str]], peer: str) -> None:
    pytest.importorskip("litserve")
    pytest.importorskip("ray")
    ctx, workload, names = bench

    assert _gate(ctx, workload, names, peer) == []


@pytest.mark.e2e
def test_bench_peers_writes_its_section_from_one_run(tmp_path: Path) -> None:
    out, plot, results = tmp_path / "BENCH.md", tmp_path / "servers.png", tmp_path / "results.json"
    out.write_text("# Benchmarks\n\n## Locust\nkept\n")
    skip = ",".join(spec.name for spec in SERVERS if spec.needs_peers)
    command = [
        sys.executable, "-m", "loadtest.bench.run", "--peers", "--sizes", "20,60", "--seconds", "1", "--warmup", "0",
        "--rounds", "2", "--concurrency", "2", "--per-size", "2", "--gate-per-cell", "1", "--train-steps", "5",
        "--skip", skip, "--no-unpinned", "--profile-seconds", "1",
        "--out", str(out), "--plot", str(plot), "--results", str(results),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout + run.stderr

    raw = json.loads(results.read_text())
    assert all(gate["passed"] for gate in raw["gates"]), raw["gates"]
    measured = {(c["server"], c["encoding"], c["n"]) for c in raw["cells"]}
    for server in (s.name for s in SERVERS if not s.needs_peers):
        assert any(m[0] == server for m in measured), server
    assert all(c["run"]["errors"] == 0 and c["run"]["requests"] > 0 for c in raw["cells"])
    text = out.read_text()
    assert "## Locust\nkept" in text
    assert "<!-- server-comparison:start -->" in text and "| hand-tuned FastAPI route | json-by-id |" in text
    assert plot.stat().st_size > 0
