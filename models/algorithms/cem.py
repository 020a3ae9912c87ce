"""The hand-tuned baseline: one fixed fusion action for every request, found by the cross-entropy method.

Seed 001 ("Non-gradient methods CEM/Bayes are used in Kuaishou — unable to optimize long-term metric,
lack of personalization"): the search scores each candidate action by the expected *immediate* request
reward on a fixed batch of requests, with the stage actors serving their means. The result is the
table's first row, and the fixed fusion action the stage-policy experiments (UNEX-RL) rank with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
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


def _cross_entropy(
    score: Callable[[np.ndarray, int], float],
    low: np.ndarray,
    high: np.ndarray,
    rng: np.random.Generator,
    config: SessionCEMConfig,
) -> tuple[np.ndarray, list[float]]:
    """The search of the session-return CEMs: each iteration draws a seed (its users, pools and draws, shared
    by all its candidates) and a population in the box [low, high]; `score(action, seed)` rates one."""
    mean, std = 0.5 * (low + high), 0.25 * (high - low)
    history: list[float] = []
    for _ in range(config.iterations):
        seed = int(rng.integers(0, 2**31 - 1))
        actions = np.clip(mean + std * rng.standard_normal((config.population, mean.size)), low, high)
        scores = np.array([score(a, seed) for a in actions])
        elite = actions[np.argsort(scores)[-config.elite :]]
        mean, std = elite.mean(0), elite.std(0) + 1e-3
        history.append(float(np.sort(scores)[-config.elite :].mean()))
    return mean, history


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

    def session_return(action: np.ndarray, seed: int) -> float:
        fusion = torch.from_numpy(action.astype(np.float32))
        return evaluate(policy, sim, run, users=config.users, seed=seed, fusion_action=fusion)["return"]

    low, high = policy.fusion.low.numpy(), policy.fusion.high.numpy()
    mean, history = _cross_entropy(session_return, low, high, rng, config)
    return torch.from_numpy(mean.astype(np.float32)), history


# The box of the constant stage weights searched: a_ij in [0, 2], the search starting at every a_ij = 1.
STAGE_WEIGHT_BOX = (0.0, 2.0)


@torch.no_grad()
def cem_stage_action(
    policy: CascadePolicy,
    sim: Simulator,
    rng: np.random.Generator,
    run: RunConfig,
    config: SessionCEMConfig,
    fusion_action: torch.Tensor,
) -> tuple[torch.Tensor, list[float]]:
    """(best constant stage weights [3, J] on session return under `fusion_action`, elite mean per iteration):
    the no-RL baseline of the stage actors (UNEX-RL), searched as `cem_session_action` searches fusion."""
    from models.env.episodes import evaluate

    candidate = copy.deepcopy(policy)
    shape = (len(candidate.stage_actors), candidate.config.n_objectives)

    def session_return(action: np.ndarray, seed: int) -> float:
        candidate.serve_constant_stages(torch.from_numpy(action.astype(np.float32)).reshape(shape))
        return evaluate(candidate, sim, run, users=config.users, seed=seed, fusion_action=fusion_action)["return"]

    low, high = np.full(shape[0] * shape[1], STAGE_WEIGHT_BOX[0]), np.full(shape[0] * shape[1], STAGE_WEIGHT_BOX[1])
    mean, history = _cross_entropy(session_return, low, high, rng, config)
    return torch.from_numpy(mean.astype(np.float32)).reshape(shape), history
