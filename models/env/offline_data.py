"""Offline RL data from the simulator: sessions served by a logged Gaussian behaviour policy, and the
true return of any fusion rule on fixed users (ResAct and EnhancedRL are trained from a log).

Serving here is fusion only: the k items with the best fused score among the request's N candidates
(no stage selection), so the actors differ only in their fusion weights. The state is user ⊕ context ⊕
session features (episodes.to_batch). The behaviour policy is a Gaussian around a state-dependent mean
near uniform weights (a fixed random linear map of the state): not optimal, so an offline learner has
room to improve on it, and stochastic, so the log carries propensities for off-policy evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.env.episodes import live_rows, to_batch
from models.env.rollout import RequestBatch
from models.nets.cascade import PolicyConfig, fused_scores
from models.ope import gaussian_log_prob
from models.sim.config import SimConfig
from models.sim.session import SessionConfig
from models.sim.simulator import Simulator
from models.sim.world import WorldName, simulator_in, v2_sim_config

# A fusion rule: a request batch → its fusion action, [B, 2J] (one per request) or [B, N, 2J] (one per item).
FusionRule = Callable[[RequestBatch], torch.Tensor]


@dataclass(frozen=True)
class OfflineConfig:
    sim: SimConfig = field(default_factory=lambda: SimConfig(session_features=("depth", "satisfaction")))
    session: SessionConfig = field(default_factory=SessionConfig)
    n_candidates: int = 50
    k: int = 10
    sessions: int = 128  # concurrent sessions while logging
    log_steps: int = 60  # requests logged per concurrent session
    behaviour_std_fraction: float = 0.1  # σ_b as a fraction of each action's range
    behaviour_tilt: float = 0.15  # strength of the behaviour mean's dependence on the state (range fractions)
    world: WorldName = "v1"  # v2, v2.1: SIMULATOR.md's worlds (`in_world`), with their widths and sessions

    def simulator(self, seed: int) -> Simulator:
        """World `seed` of this configuration's simulator."""
        return simulator_in(self.world, self.sim, seed)


def in_world(config: OfflineConfig, world: WorldName) -> OfflineConfig:
    """`config` in simulator v1, v2 or v2.1. v2 brings its own widths and business weights (v2_sim_config),
    its session length cap (60 requests) and KuaiRand's slate of 6 (the calibration's k)."""
    if world == "v1":
        return replace(config, world="v1")
    return replace(config, world=world, sim=v2_sim_config(), session=SessionConfig(max_depth=60), k=6)


@dataclass(frozen=True)
class BehaviourPolicy:
    """a ~ N(μ_b(s), σ_b²): μ_b(s) = mid + tilt·range·tanh(s·W); fixed by its seed."""

    low: torch.Tensor
    high: torch.Tensor
    weights: torch.Tensor  # [S, A]
    std: torch.Tensor  # [A]
    tilt: float

    @classmethod
    def make(cls, policy_config: PolicyConfig, config: OfflineConfig, seed: int) -> BehaviourPolicy:
        low = torch.tensor(policy_config.fusion_low)
        high = torch.tensor(policy_config.fusion_high)
        gen = torch.Generator().manual_seed(seed)
        weights = torch.randn(policy_config.state_dim, low.numel(), generator=gen) / policy_config.state_dim**0.5
        return cls(low, high, weights, config.behaviour_std_fraction * (high - low), config.behaviour_tilt)

    def mean(self, state: torch.Tensor) -> torch.Tensor:
        middle = 0.5 * (self.low + self.high)
        return middle + self.tilt * (self.high - self.low) * torch.tanh(state @ self.weights)

    def clip(self, action: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.maximum(action, self.low), self.high)


@dataclass
class OfflineLog:
    """Logged transitions, one row per request: what a trainer reads from the decision log."""

    states: np.ndarray  # [T, S]
    raw_actions: np.ndarray  # [T, A] the Gaussian draw (its density is the propensity)
    actions: np.ndarray  # [T, A] clipped to the bounds: what was served
    log_probs: np.ndarray  # [T] log π_b(raw | s)
    rewards: np.ndarray  # [T] sampled request reward (business-weighted)
    next_states: np.ndarray  # [T, S]
    done: np.ndarray  # [T] 0/1
    session_ids: np.ndarray  # [T] which logged session (trajectory) each request belongs to
    # Per-item data for the enhanced-state actor: the served items' features and predictions.
    item_features: np.ndarray  # [T, N, I]
    predictions: np.ndarray  # [T, N, J]

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


def serve(batch: RequestBatch, action: torch.Tensor, k: int) -> np.ndarray:
    """Catalogue indices [B, k] of the best fused scores; action [B, 2J] per request or [B, N, 2J] per item."""
    if action.dim() == 2:
        scores = fused_scores(batch.predictions, action)
    else:
        w, b = action.chunk(2, dim=-1)
        scores = (w * torch.log(batch.predictions.clamp(min=0.0) + b)).sum(-1)
    rows = torch.topk(scores, k, dim=1).indices.numpy()
    return np.take_along_axis(batch.requests.candidates, rows, axis=1)


@torch.no_grad()
def collect(sim: Simulator, behaviour: BehaviourPolicy, config: OfflineConfig, rng: np.random.Generator) -> OfflineLog:
    """Log `sessions × log_steps` requests served by the behaviour policy (sampled rewards, refilled sessions)."""
    sessions = sim.sessions(config.sessions, rng, config.session, config.n_candidates, refill=True)
    session_of = np.arange(config.sessions)
    next_id = config.sessions
    requests = sessions.requests()
    batch = to_batch(sim, requests, sessions, rng)
    rows: dict[str, list[np.ndarray]] = {}
    for _ in range(config.log_steps):
        mean = behaviour.mean(batch.state)
        std = behaviour.std.expand_as(mean)
        raw = mean + std * torch.from_numpy(rng.standard_normal(mean.shape, dtype=np.float32))
        action = behaviour.clip(raw)
        step = sessions.step(requests, serve(batch, action, config.k))
        requests = sessions.requests()
        next_batch = to_batch(sim, requests, sessions, rng)
        for name, value in {
            "states": batch.state.numpy(),
            "raw_actions": raw.numpy(),
            "actions": action.numpy(),
            "log_probs": gaussian_log_prob(raw.numpy(), mean.numpy(), std.numpy()),
            "rewards": step.objective_rewards.sum(-1),
            "next_states": next_batch.state.numpy(),
            "done": step.done.astype(np.float32),
            "session_ids": session_of.copy(),
            "item_features": batch.items.numpy(),
            "predictions": batch.predictions.numpy(),
        }.items():
            rows.setdefault(name, []).append(value)
        n_new = int(step.done.sum())
        session_of[step.done] = np.arange(next_id, next_id + n_new)
        next_id += n_new
        batch = next_batch
    return OfflineLog(**{name: np.concatenate(values) for name, values in rows.items()})


@torch.no_grad()
def window_return(rule: FusionRule, sim: Simulator, config: OfflineConfig, *, sessions: int, seed: int) -> float:
    """The mean expected request reward of `rule` served the way `collect` logs: `sessions` concurrent
    sessions refilled as users leave, for `config.log_steps` requests each. This is what a per-request
    estimator on the log estimates; with session dynamics it differs from `true_return`'s fresh cohort
    followed to the end of its sessions, even for the behaviour policy itself."""
    rng = np.random.default_rng(seed)
    live = sim.sessions(sessions, rng, config.session, config.n_candidates, refill=True)
    total = 0.0
    for _ in range(config.log_steps):
        requests = live.requests()
        batch = to_batch(sim, requests, live, rng)
        step = live.step(requests, serve(batch, rule(batch), config.k))
        total += float(step.expected_objective_rewards.sum())
    return total / (sessions * config.log_steps)


@torch.no_grad()
def true_return(
    rule: FusionRule, sim: Simulator, config: OfflineConfig, *, users: int = 300, seed: int = 12345
) -> dict[str, float]:
    """Serve `rule` to a fixed set of users until every session ends (expected responses, as episodes.evaluate).

    Same seed → same users, contexts, pools and leave draws, so rules differ only by what they serve.
    Returns the mean return per session, the mean depth and the mean reward per request.
    """
    rng = np.random.default_rng(seed)
    sessions = sim.sessions(users, rng, config.session, config.n_candidates, refill=False)
    total = np.zeros(users)
    depth = np.zeros(users)
    while sessions.active.any():
        active = sessions.active.copy()
        requests = sessions.requests()
        batch = to_batch(sim, requests, sessions, rng)
        live_batch = live_rows(batch, active)
        items = requests.candidates[:, : config.k].copy()
        items[active] = serve(live_batch, rule(live_batch), config.k)
        step = sessions.step(requests, items)
        total[active] += step.expected_objective_rewards[active].sum(-1)
        depth[active] += 1
    return {
        "return": float(total.mean()),
        "depth": float(depth.mean()),
        "per_request": float(total.sum() / depth.sum()),
    }


def over_seeds(run_seed: Callable[[int, Any], dict[str, Any]], cfg: Any) -> dict[str, Any]:
    """Run `run_seed(seed, cfg)` for each of `cfg.seeds` (one torch thread); the record an experiment saves."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    per_seed = {seed: run_seed(seed, cfg) for seed in cfg.seeds}
    return {"per_seed": per_seed, "seconds": time.perf_counter() - started, "config": asdict(cfg)}
