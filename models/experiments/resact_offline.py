"""`cascade experiment resact`: ResAct vs its offline baselines on a logged behaviour policy, ≥ 3 seeds.

Per seed: one world with sessions, one log of `sessions × log_steps` requests served by the Gaussian
behaviour policy (models/env/offline_data.py). Each method trains offline on that log only, then is judged two
ways, as seed 004's tables do: its true return in the simulator (fixed users, common random numbers) and
NCIS on the log. A deterministic policy has no density; NCIS uses N(π(s), σ_b²), the policy served with the
behaviour's exploration noise, so its estimate is of that exploring version (as the service would serve it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from models.algorithms.offline_baselines import BaselineConfig, DeterministicActor, train_bc, train_td3_bc
from models.algorithms.resact import ResActConfig, ResActPolicy, StateLayout, make_resact, train_resact
from models.env.offline_data import BehaviourPolicy, OfflineConfig, OfflineLog, collect, over_seeds, true_return
from models.env.rollout import RequestBatch
from models.nets.cascade import PolicyConfig
from models.ope import LoggedRewards, gaussian_log_prob, ncis

METHODS = ("behaviour", "bc", "bcq", "td3_bc", "resact")


@dataclass(frozen=True)
class ResActExperimentConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    # 2000 updates per method: the whole command fits in 15 min on the shared 2-core machine (3000 took 19).
    resact: ResActConfig = field(default_factory=lambda: ResActConfig(steps=2000))
    baseline: BaselineConfig = field(default_factory=lambda: BaselineConfig(steps=2000))
    eval_users: int = 1000
    ncis_cap: float = 10.0


def layout_of(offline: OfflineConfig) -> StateLayout:
    sim = offline.sim
    return StateLayout.from_dims(sim.user_dim, sim.context_dim, len(sim.session_features))


def resact_rule(policy: ResActPolicy, n_draws: int, seed: int) -> Callable[[RequestBatch], torch.Tensor]:
    """Serve ResAct with its own seeded latent draws (what the service would log)."""
    gen = torch.Generator().manual_seed(seed)

    def rule(batch: RequestBatch) -> torch.Tensor:
        latents = torch.randn(batch.state.shape[0], n_draws, policy.cvae.latent_dim, generator=gen)
        served: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = policy(batch.state.float(), latents)
        return served[0]

    return rule


def _actor_rule(actor: DeterministicActor) -> Callable[[RequestBatch], torch.Tensor]:
    """Serve a deterministic actor's action."""

    def rule(batch: RequestBatch) -> torch.Tensor:
        action: torch.Tensor = actor(batch.state.float())
        return action

    return rule


def ncis_of(mean_action: np.ndarray, behaviour: BehaviourPolicy, log: OfflineLog, cap: float) -> float:
    std = np.broadcast_to(behaviour.std.numpy(), mean_action.shape)
    target = gaussian_log_prob(log.raw_actions, mean_action, std)
    return ncis(LoggedRewards(log.rewards, log.log_probs, target, groups=log.session_ids), cap=cap).value


def run_seed(seed: int, cfg: ResActExperimentConfig) -> dict[str, dict[str, float]]:
    torch.manual_seed(seed)
    offline = cfg.offline
    sim = offline.simulator(seed)
    rng = np.random.default_rng([seed, 3])
    pc = PolicyConfig.from_sim(offline.sim)
    behaviour = BehaviourPolicy.make(pc, offline, seed)
    log = collect(sim, behaviour, offline, rng)
    low, high = behaviour.low, behaviour.high
    states = torch.from_numpy(log.states).float()
    eval_kwargs = {"users": cfg.eval_users, "seed": 30_000 + seed}
    out: dict[str, dict[str, float]] = {}

    draw_rng = np.random.default_rng([seed, 11])

    def behaviour_rule(batch: RequestBatch) -> torch.Tensor:
        mean = behaviour.mean(batch.state)
        return behaviour.clip(
            mean + behaviour.std * torch.from_numpy(draw_rng.standard_normal(mean.shape, dtype=np.float32))
        )

    started = time.perf_counter()
    out["behaviour"] = {
        **true_return(behaviour_rule, sim, offline, **eval_kwargs),
        "ncis": ncis_of(behaviour.mean(states).numpy(), behaviour, log, cfg.ncis_cap),
        "seconds": time.perf_counter() - started,
    }
    for name in ("bc", "td3_bc"):
        started = time.perf_counter()
        actor = DeterministicActor(log.states.shape[1], low, high, cfg.baseline.hidden)
        (train_bc if name == "bc" else train_td3_bc)(actor, log, cfg.baseline, seed)
        actor.eval()
        with torch.no_grad():
            out[name] = {
                **true_return(_actor_rule(actor), sim, offline, **eval_kwargs),
                "ncis": ncis_of(actor(states).numpy(), behaviour, log, cfg.ncis_cap),
            }
        out[name]["seconds"] = time.perf_counter() - started
    for name, bcq in (("bcq", True), ("resact", False)):
        started = time.perf_counter()
        config = ResActConfig(**{**asdict(cfg.resact), "bcq": bcq})
        policy = make_resact(log.states.shape[1], low, high, layout_of(offline), config)
        training = train_resact(policy, log, config, seed)
        policy.eval()
        with torch.no_grad():
            logged_latents = torch.randn(
                len(log), config.n_draws, config.latent_dim, generator=torch.Generator().manual_seed(seed)
            )
            mean_action = policy(states, logged_latents)[0].numpy()
            out[name] = {
                **true_return(resact_rule(policy, config.n_draws, seed), sim, offline, **eval_kwargs),
                "ncis": ncis_of(mean_action, behaviour, log, cfg.ncis_cap),
                "reconstruction_first": float(np.mean(training.reconstruction[:50])),
                "reconstruction_last": float(np.mean(training.reconstruction[-50:])),
            }
        out[name]["seconds"] = time.perf_counter() - started
    return out


def run(cfg: ResActExperimentConfig) -> dict[str, Any]:
    return over_seeds(run_seed, cfg)
