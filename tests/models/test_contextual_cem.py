"""Contextual CEM: stratified users, the per-segment search and its validation check, the table in the MLP."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.algorithms.contextual_cem import (
    ContextualCEMConfig,
    contextual_cem,
    n_segments,
    segment_elites,
    segments_of,
    stratified_users,
    write_segment_table,
)
from models.env.episodes import session_outcomes
from models.experiments.world_v2 import V2Config, experiment_record, in_world, run_seed, small
from models.nets.cascade import CascadePolicy, PolicyConfig
from models.nets.networks import mlp
from models.reports.world_v2 import world_section_markdown
from models.sim.world import SimulatorV2, v2_sim_config, world_config


@pytest.fixture(scope="module")
def sim() -> SimulatorV2:
    return SimulatorV2(v2_sim_config(), seed=0, world=world_config("v2.1"))


def test_segments_are_what_the_policy_observes_and_users_are_stratified(sim: SimulatorV2) -> None:
    assert np.array_equal(segments_of(sim), sim.segment)
    users = stratified_users(sim, 7, np.random.default_rng(0))
    assert np.array_equal(sim.segment[users], np.repeat(np.arange(n_segments(sim)), 7))
    # The sessions start with exactly those users (the small segments are 3.8 % of a uniform draw).
    out = session_outcomes(
        CascadePolicy(PolicyConfig.from_sim(sim.config)),
        sim,
        small(V2Config()).run,
        users=len(users),
        seed=3,
        user_ids=users,
    )
    assert np.array_equal(out.users, users)
    with pytest.raises(ValueError, match="rows for"):
        sim.sessions(3, np.random.default_rng(0), users=users)


def test_the_table_is_served_by_the_actors_own_mlp(sim: SimulatorV2) -> None:
    policy = CascadePolicy(replace(PolicyConfig.from_sim(sim.config), scale_free_powers=True))
    fusion = policy.fusion
    g = n_segments(sim)
    draw = torch.rand(g + 1, fusion.action_dim, generator=torch.Generator().manual_seed(1))
    table, default = (
        fusion.low + draw[:g] * (fusion.high - fusion.low),
        fusion.low + draw[g] * (fusion.high - fusion.low),
    )
    write_segment_table(policy, table, default)
    rows = np.concatenate([np.flatnonzero(sim.segment == s)[:10] for s in range(g)])
    extra = np.random.default_rng(2).standard_normal((len(rows), 6)).astype(np.float32)  # context, session
    state = torch.from_numpy(np.concatenate([sim.user_features[rows], extra], axis=1))
    served = fusion(state, torch.zeros(len(rows), fusion.action_dim)).mean
    assert torch.allclose(served, table[torch.from_numpy(sim.segment[rows])], atol=1e-4)
    state[:, :g] = 0.0  # no segment one-hot: the default row, not the middle of the box
    unknown = fusion(state, torch.zeros(len(rows), fusion.action_dim)).mean
    assert torch.allclose(unknown, default.expand_as(unknown), atol=1e-4)
    assert fusion.powers == 0 and not policy.config.scale_free_powers  # as written, in the checkpoint too
    # Still an actor a policy gradient can refine: a gradient reaches the first layer and the last layer's
    # weights from the hidden units the table does not use.
    state[:, :g] = torch.from_numpy(sim.user_features[rows, :g])  # the segment one-hots back
    fusion(state, torch.zeros(len(rows), fusion.action_dim)).mean.sum().backward()
    first, last = fusion.net[0], fusion.net[-1]
    assert isinstance(first, torch.nn.Linear) and isinstance(last, torch.nn.Linear)
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    assert last.weight.grad is not None and last.weight.grad[:, g:].abs().sum() > 0


@pytest.mark.parametrize("hidden_layers", [1, 2, 3])
def test_the_table_is_exact_through_any_number_of_relu_layers(hidden_layers: int) -> None:
    policy = CascadePolicy(PolicyConfig.from_sim(v2_sim_config()))
    width = policy.fusion.net[0].in_features
    policy.fusion.net = mlp([width, *([16] * hidden_layers), policy.fusion.action_dim])
    table = policy.fusion.low + 0.3 * (policy.fusion.high - policy.fusion.low) * torch.arange(1, 4)[:, None] / 3
    write_segment_table(policy, table, policy.fusion.low)
    state = torch.zeros(3, width)
    state[:, :3] = torch.eye(3)
    assert torch.allclose(policy.fusion(state, torch.zeros(3, policy.fusion.action_dim)).mean, table, atol=1e-4)
    policy.fusion.net = mlp([width, 16, policy.fusion.action_dim], activation=torch.nn.Tanh)
    with pytest.raises(ValueError, match="ReLU"):
        write_segment_table(policy, table, policy.fusion.low)


def test_every_segment_keeps_its_own_elites() -> None:
    # Three candidates, two segments: segment 0 is best under candidates 2 and 0, segment 1 under 1 and 2.
    candidates = np.arange(3 * 2 * 1, dtype=float).reshape(3, 2, 1)
    scores = np.array([[5.0, 0.0], [1.0, 9.0], [7.0, 4.0]])
    chosen, best = segment_elites(candidates, scores, 2)
    assert chosen.shape == (2, 2, 1)
    assert sorted(chosen[:, 0, 0]) == [candidates[0, 0, 0], candidates[2, 0, 0]]
    assert sorted(chosen[:, 1, 0]) == [candidates[1, 1, 0], candidates[2, 1, 0]]
    assert sorted(best[:, 0]) == [5.0, 7.0] and sorted(best[:, 1]) == [4.0, 9.0]


def test_a_segment_keeps_its_searched_action_only_where_validation_gains(sim: SimulatorV2) -> None:
    policy = CascadePolicy(PolicyConfig.from_sim(sim.config))
    run = small(V2Config()).run
    start = 0.5 * (policy.fusion.low + policy.fusion.high)
    config = ContextualCEMConfig(
        iterations=2, population=4, elite=2, users_per_segment=4, validation_users_per_segment=6
    )
    search = contextual_cem(policy, sim, np.random.default_rng(0), run, config, start)
    g = n_segments(sim)
    assert search.table.shape == (g, policy.fusion.action_dim) and len(search.history) == 2
    assert np.array_equal(search.kept, search.validation_gain > 0)
    assert np.allclose(search.table[~search.kept], start.numpy())
    assert np.allclose(search.table[search.kept], search.searched[search.kept])
    low, high = policy.fusion.low.numpy(), policy.fusion.high.numpy()
    assert (search.searched >= low - 1e-3).all() and (search.searched <= high + 1e-3).all()
    again = contextual_cem(policy, sim, np.random.default_rng(0), run, config, start)
    assert np.array_equal(again.table, search.table)  # seeded: the same stream gives the same table


def test_the_contextual_row_starts_from_the_cem_session_rows_constant(tmp_path: Path) -> None:
    cfg = replace(small(in_world(V2Config(), "v2.1")), methods=("cem_session", "contextual_cem"))
    both = run_seed(0, cfg, tmp_path / "both")
    alone = run_seed(0, replace(cfg, methods=("contextual_cem",)), tmp_path / "alone")
    start = both["contextual_cem"]["config"]["warm_start"]
    assert start == pytest.approx(both["cem_session"]["config"]["action"])
    assert alone["contextual_cem"]["config"] == both["contextual_cem"]["config"]  # whichever row runs first
    assert alone["contextual_cem"]["metrics"] == both["contextual_cem"]["metrics"]


def test_the_rl_row_starts_from_the_contextual_rows_table_fitted_once(tmp_path: Path) -> None:
    cfg = replace(small(in_world(V2Config(), "v2.1")), methods=("contextual_cem", "contextual_a3c"))
    both = run_seed(0, cfg, tmp_path / "both")
    alone = run_seed(0, replace(cfg, methods=("contextual_a3c",)), tmp_path / "alone")
    fitted = both["contextual_cem"]["config"]
    assert both["contextual_a3c"]["config"]["start"]["table"] == fitted["table"]
    assert alone["contextual_a3c"] == both["contextual_a3c"] | {"seconds": alone["contextual_a3c"]["seconds"]}

    # Resumed: the table comes from the finished contextual_cem result, not from a new search.
    resumed = tmp_path / "resumed" / "0" / "contextual_cem"
    resumed.mkdir(parents=True)
    recorded = json.loads((tmp_path / "both" / "0" / "contextual_cem" / "metrics.json").read_text())
    recorded["config"]["table"] = [fitted["warm_start"]] * len(fitted["table"])  # marks what was read
    (resumed / "metrics.json").write_text(json.dumps(recorded))
    again = run_seed(0, replace(cfg, resume=True), tmp_path / "resumed")
    assert again["contextual_a3c"]["config"]["start"]["table"] == recorded["config"]["table"]
    # A report of the resumed run says which of its results it did not compute (their time is not in it).
    record = experiment_record(cfg, {0: again, 1: both}, 60.0, "0.0")
    assert "1 of its 4 results read back from an earlier run" in world_section_markdown(record, "cmd", "world:t")
