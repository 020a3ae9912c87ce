from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from models.algorithms.a3c import A3CConfig
from models.algorithms.demo_policy import DemoConfig, DemoTraining, train_demo_policy
from models.env.rollout import evaluate_fusion, user_states
from models.nets.cascade import CascadePolicy, fused_scores
from tests.tiny_policy import TINY

SIZES = TINY.stage_sizes  # (500, 100, 50)


OUTPUTS = [
    "top_indices", "top_scores", "stage_observations", "stage_actions", "stage_survivors",
    "fusion_mean", "fusion_std", "fusion_raw_action", "fusion_action", "log_prob", "novelty",
]  # fmt: skip


def make_inputs(policy: CascadePolicy, n: int, k: int, seed: int = 0, noise: float = 0.0) -> tuple[torch.Tensor, ...]:
    """One request with N = n candidates, in the graph's input order."""
    g = torch.Generator().manual_seed(seed)
    c = policy.config
    return (
        torch.randn(1, c.user_dim, generator=g),
        torch.randn(1, c.context_dim, generator=g),
        torch.randn(n, c.item_dim, generator=g),
        torch.rand(n, c.n_objectives, generator=g),
        noise * torch.randn(1, 2 * c.n_objectives, generator=g),
        torch.tensor(SIZES),
        torch.tensor([k]),
    )


def run(policy: CascadePolicy, inputs: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return dict(zip(OUTPUTS, policy(*inputs), strict=True))


def expected_survivors(n: int, k: int, sizes: Sequence[int]) -> list[int]:
    kept, out = n, []
    for size in sizes:
        kept = min(kept, max(size, k))
        out.append(kept)
    return out


def test_supervised_heads_learn_the_simulated_responses(trained: DemoTraining) -> None:
    before, after = trained.report["heads"]["held_out_loss"]  # type: ignore[index]
    assert after < 0.25 * before
    # Beyond the loss: the ranking head's predictions track the simulator's expected responses.
    sim, policy = trained.simulator, trained.policy
    requests = sim.sample_requests(300, 20, np.random.default_rng(11))
    expected = sim.expected_responses(requests.users, requests.candidates, requests.context)
    state = torch.from_numpy(np.concatenate([requests.user_features, requests.context], axis=1))
    items = torch.from_numpy(sim.item_features[requests.candidates])
    with torch.no_grad():
        predicted = policy.head(2)(state, items).numpy()
    for j, name in enumerate(sim.config.objectives):
        corr = np.corrcoef(predicted[..., j].ravel(), expected[..., j].ravel())[0, 1]
        assert corr > 0.5, (name, corr)


@pytest.mark.parametrize(
    "n",
    sorted({1, 2, 9, 10, 11} | {s + d for s in SIZES for d in (-1, 0, 1)} | {1000}),
)
def test_graph_keeps_min_of_n_and_stage_size_below_at_and_above_each_stage(trained: DemoTraining, n: int) -> None:
    inputs = make_inputs(trained.policy, n, k=10)
    out = run(trained.policy, inputs)
    assert out["stage_survivors"].tolist() == expected_survivors(n, 10, SIZES)
    top = out["top_indices"]
    assert top.dtype == torch.int64 and len(top) == min(n, 10) == len(set(top.tolist()))
    assert int(top.min()) >= 0 and int(top.max()) < n
    scores = out["top_scores"]
    assert torch.all(scores[:-1] >= scores[1:])
    # Scores are the fused scores of the returned rows under the served action.
    recomputed = fused_scores(inputs[3][top].unsqueeze(0), out["fusion_action"])[0]
    assert torch.allclose(scores, recomputed, atol=1e-5)
    # The first stage observes user ⊕ context ⊕ the mean of all candidates.
    assert torch.allclose(out["stage_observations"][0, -trained.policy.config.item_dim :], inputs[2].mean(0))
    assert (out["stage_actions"] >= 0).all()


@pytest.mark.parametrize(("n", "k"), [(1, 1), (10, 10), (50, 50), (100, 100), (7, 10), (600, 120)])
def test_graph_handles_k_equal_to_and_above_n_and_stage_sizes(trained: DemoTraining, n: int, k: int) -> None:
    out = run(trained.policy, make_inputs(trained.policy, n, k=k))
    assert out["stage_survivors"].tolist() == expected_survivors(n, k, SIZES)
    assert len(out["top_indices"]) == min(n, k)
    if k >= n:  # every candidate is served
        assert sorted(out["top_indices"].tolist()) == list(range(n))


def test_final_top_k_is_the_best_fused_score_among_ranking_survivors(trained: DemoTraining) -> None:
    policy = trained.policy
    user, context, items, mtl, noise, sizes, k = make_inputs(policy, 700, k=10, seed=3)
    out = run(policy, (user, context, items, mtl, noise, sizes, k))
    with torch.no_grad():
        rows = policy.select(torch.cat([user, context], 1), items.unsqueeze(0), sizes, k).rows[0]
        scores = fused_scores(mtl[rows].unsqueeze(0), out["fusion_action"])[0]
    assert len(rows) == SIZES[2]
    assert out["top_indices"].tolist() == rows[torch.argsort(scores, descending=True)[:10]].tolist()


def test_fusion_action_is_a_clipped_gaussian_draw_with_its_log_prob(trained: DemoTraining) -> None:
    policy = trained.policy
    low, high = policy.fusion.low, policy.fusion.high
    served = run(policy, make_inputs(policy, 60, k=10, noise=0.0))
    assert torch.equal(served["fusion_raw_action"], served["fusion_mean"])
    assert ((served["fusion_mean"] >= low) & (served["fusion_mean"] <= high)).all()
    # Large draws: some leave the box and are clipped.
    explored = run(policy, make_inputs(policy, 60, k=10, noise=6.0))
    raw, action = explored["fusion_raw_action"], explored["fusion_action"]
    assert ((raw < low) | (raw > high)).any()
    assert torch.equal(action, torch.clamp(raw, low, high))
    normal = torch.distributions.Normal(explored["fusion_mean"], explored["fusion_std"])
    density = normal.log_prob(raw).sum(-1)  # type: ignore[no-untyped-call]
    assert torch.allclose(explored["log_prob"], density, atol=1e-4)
    assert explored["log_prob"].item() < served["log_prob"].item()
    names = policy.config.action_names
    assert names[0] == "w_watch_time" and names[len(names) // 2] == "b_watch_time"
    assert math.isclose(float(low[len(names) // 2]), 0.01, rel_tol=1e-6)


def test_rnd_bonus_is_low_for_seen_users_and_high_for_novel_ones(trained: DemoTraining) -> None:
    states = user_states(trained.simulator, 2000, np.random.default_rng(12))
    with torch.no_grad():
        seen = trained.policy.rnd(states).mean().item()
        novel = trained.policy.rnd(3.0 * states).mean().item()
    rnd_first, rnd_last = trained.report["rnd"]["loss"]  # type: ignore[index]
    assert rnd_last < 0.1 * rnd_first
    assert novel > 5 * seen


def test_trained_fusion_policy_beats_uniform_and_random_weights(trained: DemoTraining) -> None:
    # Same requests, predictions and stage selections for all three: the fusion action is the only difference.
    rewards = evaluate_fusion(
        trained.policy,
        trained.simulator,
        n_requests=1000,
        n_candidates=200,
        stage_sizes=TINY.a3c.stage_sizes,
        k=10,
        seed=99,
    )
    assert rewards["policy"] > 1.05 * rewards["uniform"], rewards
    assert rewards["policy"] > 1.05 * rewards["random"], rewards


def test_a3c_raises_the_request_reward_during_training(trained: DemoTraining) -> None:
    a3c = trained.report["a3c"]
    assert a3c["reward_last"] > 1.1 * a3c["reward_first"]  # type: ignore[index]


def test_training_is_deterministic_for_a_seed() -> None:
    def tiny(seed: int) -> DemoTraining:
        a3c = A3CConfig(steps=3, batch=16)
        return train_demo_policy(DemoConfig(seed=seed, head_steps=5, rnd_steps=5, a3c=a3c, eval_requests=4))

    first, second, other = tiny(0), tiny(0), tiny(1)
    a, b, c = first.policy.state_dict(), second.policy.state_dict(), other.policy.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert first.evaluation == second.evaluation
    assert not all(torch.equal(a[name], c[name]) for name in a)
