"""The hand-tuned baseline: one fixed fusion action for every request, found by the cross-entropy method.

Seed 001 ("Non-gradient methods CEM/Bayes are used in Kuaishou — unable to optimize long-term metric,
lack of personalization"): the search scores each candidate action by the expected *immediate* request
reward on a fixed batch of requests, with the stage actors serving their means. The result is the
table's first row, and the fixed fusion action the stage-policy experiments (UNEX-RL) rank with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.env.episodes import RunConfig, to_batch
from models.env.rollout import expected_reward, served_items
from models.nets.cascade import CascadePolicy
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class CEMConfig:
    iterations: int = 8
    population: int = 32
    elite: int = 6
    requests: int = 256


@torch.no_grad()
def cem_fusion_action(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, run: RunConfig, config: CEMConfig
) -> tuple[torch.Tensor, list[float]]:
    """(best constant action [A], elite mean reward per iteration). Fresh requests every iteration."""
    low, high = policy.fusion.low.numpy(), policy.fusion.high.numpy()
    mean, std = 0.5 * (low + high), 0.25 * (high - low)
    sizes, k = torch.tensor(run.stage_sizes), torch.tensor([run.k])
    history: list[float] = []
    for _ in range(config.iterations):
        sessions = sim.sessions(config.requests, rng, run.session, run.n_candidates)
        batch = to_batch(sim, sessions.requests(), sessions, rng)
        selection = policy.select(batch.state, batch.items, sizes, k)
        actions = np.clip(mean + std * rng.standard_normal((config.population, mean.size)), low, high)
        scores = np.array(
            [
                expected_reward(
                    sim,
                    batch,
                    served_items(
                        batch, selection, torch.from_numpy(a.astype(np.float32)).expand(config.requests, -1), k
                    ),
                ).mean()
                for a in actions
            ]
        )
        elite = actions[np.argsort(scores)[-config.elite :]]
        mean, std = elite.mean(0), elite.std(0) + 1e-3
        history.append(float(np.sort(scores)[-config.elite :].mean()))
    return torch.from_numpy(mean.astype(np.float32)), history


@dataclass(frozen=True)
class SessionCEMConfig:
    """CEM scored on the session return (the objective the RL rows optimise), not the immediate reward."""

    iterations: int = 5
    population: int = 10
    elite: int = 3
    users: int = 160  # sessions per candidate action, the same users for every candidate of an iteration


@torch.no_grad()
def cem_session_action(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, run: RunConfig, config: SessionCEMConfig
) -> tuple[torch.Tensor, list[float]]:
    """(best constant action [A] on session return, elite mean return per iteration).

    Every candidate of an iteration is scored on the same users, pools and draws (common random numbers,
    `evaluate`'s seed), so the search compares actions rather than users; each iteration draws new ones.
    The evaluation users of an experiment use other seeds (10_000 + seed), so the constant is not fitted
    on the users it is judged on.
    """
    from models.env.episodes import evaluate

    low, high = policy.fusion.low.numpy(), policy.fusion.high.numpy()
    mean, std = 0.5 * (low + high), 0.25 * (high - low)
    history: list[float] = []
    for _ in range(config.iterations):
        seed = int(rng.integers(0, 2**31 - 1))
        actions = np.clip(mean + std * rng.standard_normal((config.population, mean.size)), low, high)
        scores = np.array(
            [
                evaluate(
                    policy,
                    sim,
                    run,
                    users=config.users,
                    seed=seed,
                    fusion_action=torch.from_numpy(a.astype(np.float32)),
                )["return"]
                for a in actions
            ]
        )
        elite = actions[np.argsort(scores)[-config.elite :]]
        mean, std = elite.mean(0), elite.std(0) + 1e-3
        history.append(float(np.sort(scores)[-config.elite :].mean()))
    return torch.from_numpy(mean.astype(np.float32)), history
