"""The headroom probe (one constant per observable group vs one), the scale-free fusion powers, and the
experiment's per-user outcomes, resume and held-out report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.env.episodes import evaluate, session_outcomes
from models.experiments.headroom import N_GROUPS, GroupedConstantFusion, observable_groups
from models.experiments.sweep import group_headroom, sweep_table
from models.experiments.world_v2 import V2Config, collect_runs, experiment_record, run_seed, small
from models.nets.actors import FusionActor
from models.nets.cascade import CascadePolicy, PolicyConfig
from models.reports.world_v2 import held_out_markdown, write_results
from models.sim.world import SimulatorV2, v2_sim_config


@pytest.fixture(scope="module")
def sim() -> SimulatorV2:
    return SimulatorV2(v2_sim_config(), seed=0)


def test_groups_are_segment_by_social_and_cover_every_user(sim: SimulatorV2) -> None:
    groups = observable_groups(sim)(sim.user_features)
    assert set(np.unique(groups)) == set(range(N_GROUPS))
    full = sim.segment == 0
    assert set(np.unique(groups[full])) == {0, 1}  # the full-active segment, below / above the median
    assert set(np.unique(groups[sim.segment >= 2])) == {4, 5}  # the three small segments together


def test_grouped_constant_serves_each_groups_row(sim: SimulatorV2) -> None:
    policy = CascadePolicy(PolicyConfig.from_sim(sim.config))
    low, high = policy.fusion.low, policy.fusion.high
    table = low + torch.rand(N_GROUPS, policy.fusion.action_dim, generator=torch.Generator().manual_seed(0)) * (
        high - low
    )
    group_of = observable_groups(sim)
    fusion = GroupedConstantFusion(policy.fusion, table, group_of)
    state = torch.from_numpy(np.concatenate([sim.user_features[:50], np.zeros((50, 6), np.float32)], axis=1))
    served = fusion(state, torch.zeros(50, policy.fusion.action_dim)).action
    assert torch.equal(served, table[torch.from_numpy(group_of(sim.user_features[:50]))])


def test_scale_free_powers_keep_their_sum_and_start_uniform() -> None:
    actor = FusionActor(6, [0.0] * 3 + [0.01] * 3, [2.0] * 3 + [1.0] * 3, powers=3)
    state = torch.randn(32, 6)
    start = actor(state, torch.zeros(32, 6)).mean
    assert torch.allclose(start[:, :3], torch.ones(32, 3))
    with torch.no_grad():
        for p in actor.net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    mean = actor(state, torch.zeros(32, 6)).mean
    sums = mean[:, :3].sum(1)
    unclipped = (mean[:, :3] < 2.0).all(1)  # the box's top edge is the only thing that changes the sum
    assert unclipped.any() and torch.allclose(sums[unclipped], torch.full_like(sums[unclipped], 3.0))
    assert not torch.allclose(mean[:, :3], start[:, :3])  # the shares themselves can move


def test_session_outcomes_are_what_evaluate_averages(sim: SimulatorV2) -> None:
    cfg = small(V2Config())
    policy = CascadePolicy(PolicyConfig.from_sim(sim.config))
    outcomes = session_outcomes(policy, sim, cfg.run, users=12, seed=5)
    means = evaluate(policy, sim, cfg.run, users=12, seed=5)
    assert outcomes.returns.shape == (12,) and means["return"] == pytest.approx(outcomes.returns.mean())
    assert means["depth"] == pytest.approx(outcomes.depth.mean())


def test_grid_rows_resume_and_the_held_out_section(tmp_path: Path) -> None:
    cfg = replace(small(V2Config()), methods=("uniform", "cem_session", "grid_one", "grid_groups", "demo_a3c"))
    runs = tmp_path / "runs"
    per_seed = {str(s): run_seed(s, cfg, runs) for s in (0, 1)}
    grid = per_seed["0"]["grid_groups"]["config"]
    assert len(grid["per_group"]) == N_GROUPS and grid["best"] == per_seed["0"]["grid_one"]["config"]["best"]
    # A resumed run keeps the finished (seed, method) results instead of training them again.
    stamp = (runs / "0" / "demo_a3c" / "metrics.json").stat().st_mtime_ns
    again = run_seed(0, replace(cfg, resume=True), runs)
    assert (runs / "0" / "demo_a3c" / "metrics.json").stat().st_mtime_ns == stamp
    assert again["demo_a3c"]["metrics"] == per_seed["0"]["demo_a3c"]["metrics"]
    record = collect_runs(runs, cfg, seconds=1.0, seeds=(1,))
    assert list(record["per_seed"]) == ["1"]
    record = collect_runs(runs, cfg, seconds=1.0)
    text = held_out_markdown(record, "cascade experiment heldout --seeds 0-1")
    d = np.array(
        [
            per_seed[s]["demo_a3c"]["metrics"]["return"] - per_seed[s]["cem_session"]["metrics"]["return"]
            for s in per_seed
        ]
    )
    assert "| demo_a3c vs cem_session |" in text and f"by {d.mean():+.2f}" in text
    full = experiment_record(cfg, per_seed, 1.0, "test")
    report = write_results(full, tmp_path / "RESULTS.md", "cascade experiment v2 --seeds 0-1").read_text()
    assert "grid_groups vs grid_one" in report and "Can 'beats the best constant' be seen" in report


def test_group_headroom_finds_groups_with_different_best_actions_and_no_gain_without() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 1000)
    noise = rng.normal(0.0, 5.0, (2, 2000))
    # Action 0 is worth 110 to group 0 and 90 to group 1; action 1 the other way round.
    differing = np.where(groups == 0, [[110.0], [90.0]], [[90.0], [110.0]]) + noise
    h = group_headroom(differing, groups)
    assert h["split_half_low"] > 0.08 and h["in_sample"] > 0.08 and h["groups_with_own_best"] == 1  # 110 vs 100
    # Both groups prefer action 1: choosing per group can only fit noise.
    shared = np.where(groups == 0, [[100.0], [104.0]], [[100.0], [104.0]]) + noise
    h = group_headroom(shared, groups)
    assert h["groups_with_own_best"] == 0 and abs(h["split_half"]) < 0.01 and h["in_sample"] >= 0.0


def test_sweep_table_renders_every_world_of_every_row() -> None:
    rows = [
        [{"parameter": "follow", "value": 0.2, "best_constant_return": 140.0 + w, "personalisation": -0.01 * (w + 1),
          "objective": 0.02}]
        for w in range(3)
    ]  # fmt: skip
    text = sweep_table(rows, (0, 1, 2), 400)
    assert "| follow | 0.2 | 141.0 | -2.00% [-1.0%, -2.0%, -3.0%] | +2.00% [+2.0%, +2.0%, +2.0%] |" in text
