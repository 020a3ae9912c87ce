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
from models.sim.session import Sessions
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
        sessions = Sessions(sim, config.requests, rng, run.session, run.n_candidates)
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
