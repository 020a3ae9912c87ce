"""`cascade experiment enhanced`: EnhancedRL (per-item fusion) vs the user-level fusion actor, ≥ 3 seeds.

Both train online on the same simulated sessions (same world, N candidates, k served, sampled rewards,
the same number of requests: steps × sessions) and start from the middle of the action box. The user-level
actor is models/algorithms/a3c.py's train_a3c on a CascadePolicy whose stages keep every candidate (stage sizes = N),
so both serve the top k of the N candidates by their fused score. Both are judged by their true return on
the same fixed users (models/env/offline_data.py's true_return, served at their means), with uniform fusion weights
as the floor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.algorithms.a3c import SessionA3CConfig, train_a3c
from models.algorithms.enhanced_rl import EnhancedActor, EnhancedRLConfig, train_enhanced_rl
from models.env.episodes import RunConfig
from models.env.offline_data import over_seeds, true_return
from models.nets.cascade import CascadePolicy, PolicyConfig


@dataclass(frozen=True)
class EnhancedExperimentConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    enhanced: EnhancedRLConfig = field(default_factory=EnhancedRLConfig)
    a3c_actor_lr: float = 3e-3
    eval_users: int = 1000


def run_seed(seed: int, cfg: EnhancedExperimentConfig) -> dict[str, dict[str, float]]:
    e = cfg.enhanced
    off = e.offline
    sim = off.simulator(seed)
    pc = PolicyConfig.from_sim(off.sim)
    eval_kwargs = {"users": cfg.eval_users, "seed": 40_000 + seed}
    out: dict[str, dict[str, float]] = {}

    low, high = torch.tensor(pc.fusion_low), torch.tensor(pc.fusion_high)
    uniform = torch.cat([torch.ones(pc.n_objectives), 0.5 * (low + high)[pc.n_objectives :]])
    out["uniform"] = true_return(lambda b: uniform.expand(b.state.shape[0], -1), sim, off, **eval_kwargs)

    torch.manual_seed(seed)
    started = time.perf_counter()
    policy = CascadePolicy(pc)
    n = off.n_candidates
    run = RunConfig(
        steps=e.steps,
        sessions=e.sessions,
        n_candidates=n,
        stage_sizes=(n, n, n),
        k=off.k,
        actor_lr=cfg.a3c_actor_lr,
        session=off.session,
    )
    train_a3c(policy, sim, np.random.default_rng([seed, 21]), SessionA3CConfig(run=run, gamma=e.gamma))
    policy.eval()
    with torch.no_grad():
        out["user_level_a3c"] = true_return(
            lambda b: policy.fusion(b.state, torch.zeros(b.state.shape[0], 2 * pc.n_objectives)).action,
            sim,
            off,
            **eval_kwargs,
        )
    out["user_level_a3c"]["seconds"] = time.perf_counter() - started

    torch.manual_seed(seed)
    started = time.perf_counter()
    actor = EnhancedActor(pc.state_dim, off.sim.item_dim, pc.n_objectives, low, high, e.hidden)
    train_enhanced_rl(actor, sim, np.random.default_rng([seed, 22]), e)
    actor.eval()
    with torch.no_grad():
        out["enhanced_rl"] = true_return(lambda b: actor(b.state, b.items, b.predictions), sim, off, **eval_kwargs)
    out["enhanced_rl"]["seconds"] = time.perf_counter() - started
    return out


def run(cfg: EnhancedExperimentConfig) -> dict[str, Any]:
    return over_seeds(run_seed, cfg)
