"""`run_loop` end to end, small: a real `cascade serve`, simulated users over HTTP, consumer groups,
the join, training from the active bundle's checkpoint, the gate's verdict in the candidate's manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from contracts.store import active_version, bundle_path, read_manifest
from models.algorithms.a3c import A3CConfig
from models.algorithms.demo_policy import DemoConfig
from models.algorithms.logged_a3c import LoggedA3CConfig
from models.ope.gate import GateConfig
from pipelines.loop import LoopConfig, run_loop, v2_loop_config


def _one_small_round(config: LoopConfig, *, requests: int, demo: DemoConfig) -> LoopConfig:
    """`config` cut to one round of `requests` small requests, trained briefly, with `demo`."""
    return replace(
        config,
        iterations=1,
        requests_per_phase=requests,
        n_candidates=60,
        # Wide enough that a loaded machine still delivers every feedback inside it (late ones are a
        # different case, with their own tests).
        reward_window_seconds=5.0,
        train=LoggedA3CConfig(epochs=20),
        gate=GateConfig(min_ess=5.0),
        demo=demo,
    )


@pytest.mark.e2e
def test_one_iteration_logs_joins_trains_judges_and_stops(tmp_path: Path) -> None:
    demo = DemoConfig(head_steps=60, rnd_steps=30, a3c=A3CConfig(steps=30), eval_requests=10)
    config = _one_small_round(LoopConfig(), requests=60, demo=demo)
    lines: list[str] = []

    reports = run_loop(config, tmp_path, echo=lines.append)

    assert [r.iteration for r in reports] == [0, 1]
    first = reports[0]
    assert first.phase["requests"] == 60 and first.phase["feedback_events"] == 60 * config.k
    assert first.joined == 60 and first.late == 0 and first.defaulted == 0  # every decision got its feedback
    assert first.candidate is not None and first.gate is not None
    manifest = read_manifest(tmp_path / "bundles" / first.candidate)
    assert manifest.evaluation["gate"] == first.gate["gate"] in {"publish", "refuse"}
    assert list(first.phase["versions"]) == [manifest.training["warm_start"]]  # warm-started from what served
    served_after = active_version(tmp_path / "store", "demo")
    assert (served_after == first.candidate) == first.published
    assert list(reports[1].phase["versions"]) == [served_after]  # the last phase is served by the active one
    assert json.loads((tmp_path / "loop.json").read_text())[0]["joined"] == 60
    assert (tmp_path / "loop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.startswith("phase 1: true return") for line in lines)


@pytest.mark.e2e
def test_the_loop_runs_in_simulator_v2_with_its_session_trained_demo(tmp_path: Path) -> None:
    v2 = v2_loop_config(0)
    session_run = replace(v2.demo.session_run, steps=3, sessions=8, n_candidates=30, stage_sizes=(20, 15, 10))
    demo = replace(v2.demo, head_steps=30, rnd_steps=20, session_run=session_run, eval_users=20, eval_requests=10)
    config = _one_small_round(v2, requests=40, demo=demo)

    reports = run_loop(config, tmp_path, echo=lambda _: None)

    first = reports[0]
    served = next(iter(first.phase["versions"]))  # type: ignore[call-overload]
    assert read_manifest(bundle_path(tmp_path / "store", "demo", served)).training["world"] == "v2"
    assert first.phase["feedback_events"] == 40 * config.k == 40 * 6  # KuaiRand's slate of 6
    assert first.joined == 40 and first.candidate is not None and first.gate is not None
