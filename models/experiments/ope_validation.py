"""OPE validated against the truth: each estimator's value of several policies vs the simulator's.

Per seed: one world and one log of sessions served by the behaviour policy (models/env/offline_data.py). The
target policies are Gaussians with the behaviour's std around shifted means, μ(s) = μ_b(s) + δ·range·d,
for a direction d that earns more (the best of a few random constant actions, relative to the middle of the
box) and its opposite, at several δ: policies of different quality, more off-policy as δ grows. The
estimand is the mean request reward in the log's own process; its truth is the policy run on-policy in
the simulator that way, refilled sessions for the logging window, expected responses (window_return). The
value for a fresh cohort followed to the end of its sessions (true_return) is kept beside it: with session
dynamics the two differ, for the behaviour policy too. Estimators see only the logged arrays. The doubly
robust reward model is an MLP r̂(s, a) fitted on the log; E_{a~π}[r̂] is a Monte Carlo mean over draws of
the target policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.env.offline_data import (
    BehaviourPolicy,
    OfflineConfig,
    OfflineLog,
    collect,
    over_seeds,
    serve,
    true_return,
    window_return,
)
from models.env.rollout import RequestBatch, expected_reward
from models.nets.cascade import PolicyConfig
from models.nets.networks import mlp
from models.ope import LoggedRewards, estimate_all, gaussian_log_prob
from models.ope.estimators import Estimate
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class OPEValidationConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    shifts: tuple[float, ...] = (0.1, 0.2, 0.3)  # δ, in fractions of each action's range
    eval_users: int = 1000
    window_sessions: int = 256  # concurrent sessions of the truth in the log's process (15,360 requests)
    reward_model_steps: int = 600
    ncis_cap: float = 10.0
    mc_draws: int = 8  # target-policy draws per logged state for the direct-method term of DR


@dataclass(frozen=True)
class TargetPolicy:
    name: str
    behaviour: BehaviourPolicy
    shift: torch.Tensor  # [A] added to the behaviour mean

    def mean(self, state: torch.Tensor) -> torch.Tensor:
        return self.behaviour.mean(state) + self.shift

    def log_prob(self, states: np.ndarray, raw: np.ndarray) -> np.ndarray:
        mean = self.mean(torch.from_numpy(states).float()).numpy()
        return gaussian_log_prob(raw, mean, np.broadcast_to(self.behaviour.std.numpy(), raw.shape))


def _good_direction(
    sim: Simulator, behaviour: BehaviourPolicy, cfg: OfflineConfig, rng: np.random.Generator
) -> torch.Tensor:
    """(a good constant action − middle of the box) / range, scaled to max |d| = 1: a direction that earns more.

    The constant action comes from a short cross-entropy search on the expected request reward of 256
    requests (4 rounds of 32 draws, 8 elites)."""
    from models.env.rollout import request_batch

    batch = request_batch(sim, 256, cfg.n_candidates, rng)
    low, high = behaviour.low, behaviour.high
    middle = 0.5 * (low + high)
    mean, std = middle.clone(), 0.3 * (high - low)
    for _ in range(4):
        draws = mean + std * torch.from_numpy(rng.standard_normal((32, low.numel()), dtype=np.float32))
        draws = behaviour.clip(draws)
        scores = np.array(
            [float(expected_reward(sim, batch, serve(batch, a.expand(256, -1), cfg.k)).mean()) for a in draws]
        )
        elites = draws[np.argsort(scores)[-8:]]
        mean, std = elites.mean(0), elites.std(0) + 0.02 * (high - low)
    direction = (mean - middle) / (high - low)
    return direction / direction.abs().max()


def _fit_reward_model(log: OfflineLog, steps: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    x = torch.from_numpy(np.concatenate([log.states, log.actions], axis=1)).float()
    y = torch.from_numpy(log.rewards).float()
    scale = float(y.std()) + 1e-8
    model = mlp([x.shape[1], 64, 64, 1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (256,), generator=gen)
        loss = ((model(x[idx]).squeeze(-1) - y[idx] / scale) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _Scaled(model, scale)


class _Scaled(torch.nn.Module):
    def __init__(self, model: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        predicted: torch.Tensor = self.model(torch.cat([states, actions], dim=-1))
        return predicted.squeeze(-1) * self.scale


@torch.no_grad()
def _dr_predictions(
    model: torch.nn.Module, log: OfflineLog, policy: TargetPolicy, draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    states = torch.from_numpy(log.states).float()
    logged = model(states, torch.from_numpy(log.actions).float()).numpy()
    mean = policy.mean(states)
    std = policy.behaviour.std.expand_as(mean)
    target = np.zeros(len(log))
    for _ in range(draws):
        raw = mean + std * torch.from_numpy(rng.standard_normal(mean.shape, dtype=np.float32))
        target += model(states, policy.behaviour.clip(raw)).numpy() / draws
    return logged, target


def run_seed(seed: int, cfg: OPEValidationConfig) -> dict[str, dict[str, float]]:
    """Per policy: the true mean request reward and each estimator's value, on one world and one log."""
    torch.manual_seed(seed)
    offline = cfg.offline
    sim = offline.simulator(seed)
    rng = np.random.default_rng([seed, 5])
    behaviour = BehaviourPolicy.make(PolicyConfig.from_sim(offline.sim), offline, seed)
    log = collect(sim, behaviour, offline, rng)
    direction = _good_direction(sim, behaviour, offline, rng)
    range_ = behaviour.high - behaviour.low
    policies = [TargetPolicy("behaviour", behaviour, torch.zeros_like(range_))]
    for delta in cfg.shifts:
        policies.append(TargetPolicy(f"better δ={delta}", behaviour, delta * range_ * direction))
        policies.append(TargetPolicy(f"worse δ={delta}", behaviour, -delta * range_ * direction))
    model = _fit_reward_model(log, cfg.reward_model_steps, seed)
    out: dict[str, dict[str, float]] = {}
    for policy in policies:
        draw_rng = np.random.default_rng([seed, 9])

        def rule(
            batch: RequestBatch, policy: TargetPolicy = policy, draw_rng: np.random.Generator = draw_rng
        ) -> torch.Tensor:
            mean = policy.mean(batch.state)
            noise = torch.from_numpy(draw_rng.standard_normal(mean.shape, dtype=np.float32))
            return policy.behaviour.clip(mean + policy.behaviour.std * noise)

        # The estimand of a per-request estimator on this log: the target served in the log's own process
        # (refilled sessions, the logging window). The fresh cohort's value beside it, for reference.
        truth = window_return(rule, sim, offline, sessions=cfg.window_sessions, seed=20_000 + seed)
        cohort = true_return(rule, sim, offline, users=cfg.eval_users, seed=20_000 + seed)["per_request"]
        logged_pred, target_pred = _dr_predictions(model, log, policy, cfg.mc_draws, rng)
        logged = LoggedRewards(
            rewards=log.rewards,
            behaviour_log_prob=log.log_probs,
            target_log_prob=policy.log_prob(log.states, log.raw_actions),
            reward_logged_pred=logged_pred,
            reward_target_pred=target_pred,
            groups=log.session_ids,
        )
        estimates = estimate_all(logged)
        estimates["ncis"] = _ncis(logged, cfg.ncis_cap)
        out[policy.name] = {"truth": truth, "cohort_truth": cohort, **{n: e.value for n, e in estimates.items()}}
        out[policy.name]["ess"] = estimates["ips"].ess
    return out


def _ncis(log: LoggedRewards, cap: float) -> Estimate:
    from models.ope import ncis

    return ncis(log, cap=cap)


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (no ties expected among continuous values)."""
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


ESTIMATOR_NAMES = ("ips", "snips", "ncis", "dr")


def summarise(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per estimator over seeds: bias (mean ± std of estimate − truth over policies and seeds), mean |error|,
    rank correlation with the truth (per seed, mean ± std)."""
    out: dict[str, dict[str, float]] = {}
    for name in ESTIMATOR_NAMES:
        errors, correlations = [], []
        for results in per_seed.values():
            truth = np.array([r["truth"] for r in results.values()])
            values = np.array([r[name] for r in results.values()])
            errors.append(values - truth)
            correlations.append(spearman(values, truth))
        err = np.concatenate(errors)
        per_seed_bias = [float(e.mean()) for e in errors]
        out[name] = {
            "bias": float(err.mean()),
            "bias_std_over_seeds": float(np.std(per_seed_bias)),
            "error_std": float(err.std()),
            "mae": float(np.abs(err).mean()),
            "spearman": float(np.mean(correlations)),
            "spearman_std": float(np.std(correlations)),
        }
    return out


def run(cfg: OPEValidationConfig) -> dict[str, Any]:
    record = over_seeds(run_seed, cfg)
    return {**record, "summary": summarise(record["per_seed"])}
