"""The headroom of a state-dependent constant over one constant: a property of the world, no RL.

A learned fusion actor can beat the best constant action only by serving different actions to states
whose best actions differ. Before asking whether a method finds that, measure whether it is there: one
grid of constant actions (uniform, then CEM's first population N(mid, (¼·range)²) clipped to the box) is
served to a set of *selection* users; per observable group (activity segment full / high / the small
three × observed social propensity above / below the median: SIMULATOR.md §2) the action best for that
group is chosen, and the action best for everyone. Both choices are then measured on the experiment's
evaluation users, which the selection never saw, so a lucky pick on noise shows up as no gain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.algorithms.contextual_cem import n_segments
from models.env.episodes import RunConfig, session_outcomes
from models.nets.actors import FusionActor, FusionStep, gaussian_log_prob
from models.nets.cascade import CascadePolicy
from models.reports.stats import method_stream
from models.sim.simulator import Simulator

N_GROUPS = 6
GroupFn = Callable[[np.ndarray], np.ndarray]


def observable_groups(sim: Simulator) -> GroupFn:
    """Group (0..5) of each user-feature row from what the policy observes: the activity segment (full,
    high, the three small ones together) × the observed social propensity above / below the world's
    median. Rows may carry more columns after the user's (context, session): only the first are read."""
    g = n_segments(sim)  # raises outside the v2 worlds, which alone have segments and ζ_u
    threshold = float(np.median(sim.user_features[:, g]))

    def group_of(rows: np.ndarray) -> np.ndarray:
        segment = np.minimum(np.argmax(rows[:, :g], axis=1), 2)
        out: np.ndarray = 2 * segment + (rows[:, g] > threshold).astype(int)
        return out

    return group_of


class GroupedConstantFusion(FusionActor):
    """Serves one fixed action per observable group (the state-dependent constant); a tiny std, so any
    exploration stays at the table."""

    table: torch.Tensor

    def __init__(self, base: FusionActor, table: torch.Tensor, group_of: GroupFn) -> None:
        super().__init__(1, base.low.tolist(), base.high.tolist())
        self.register_buffer("table", table.float())
        self.group_of = group_of
        with torch.no_grad():
            self.log_std.copy_(torch.log(0.02 * (self.high - self.low)))

    def forward(self, state: torch.Tensor, noise: torch.Tensor) -> FusionStep:
        mean = self.table[torch.from_numpy(self.group_of(state.detach().numpy()))]
        std = self.log_std.exp().expand_as(mean)
        raw = mean + std * noise
        action = torch.minimum(torch.maximum(raw, self.low), self.high)
        return FusionStep(mean, std, raw, action, gaussian_log_prob(raw.detach(), mean, std))


@dataclass(frozen=True)
class GridConfig:
    candidates: int = 24  # constant actions served to every selection user
    users: int = 400  # selection users (seed 20_000 + world seed: not the evaluation users)
    min_group_users: int = 20  # a group with fewer selection users takes the global choice


@dataclass(frozen=True)
class GridChoice:
    actions: np.ndarray  # [C, A] the grid
    best: int  # the grid action with the highest mean return over all selection users
    per_group: np.ndarray  # [G] the grid action chosen for each group
    selection_returns: np.ndarray  # [C] mean return of each action on the selection users


def grid_actions(policy: CascadePolicy, n: int, rng: np.random.Generator) -> np.ndarray:
    low, high = policy.fusion.low.numpy(), policy.fusion.high.numpy()
    j = low.size // 2
    uniform = np.concatenate([np.ones(j), 0.5 * (low + high)[j:]])
    draws = np.clip(0.5 * (low + high) + 0.25 * (high - low) * rng.standard_normal((n - 1, low.size)), low, high)
    return np.vstack([uniform, draws])


@torch.no_grad()
def choose(
    policy: CascadePolicy, sim: Simulator, run: RunConfig, seed: int, config: GridConfig, group_of: GroupFn
) -> GridChoice:
    """Serve every grid action to the same selection users (common random numbers) and choose."""
    actions = grid_actions(policy, config.candidates, method_stream(seed, "grid"))
    returns, users = [], None
    for a in actions:
        out = session_outcomes(
            policy,
            sim,
            run,
            users=config.users,
            seed=20_000 + seed,
            fusion_action=torch.from_numpy(a.astype(np.float32)),
        )
        returns.append(out.returns)
        users = out.users
    assert users is not None
    table = np.stack(returns)  # [C, U]
    groups = group_of(sim.user_features[users])
    best = int(np.argmax(table.mean(1)))
    per_group = np.full(N_GROUPS, best)
    for g in range(N_GROUPS):
        rows = groups == g
        if rows.sum() >= config.min_group_users:
            per_group[g] = int(np.argmax(table[:, rows].mean(1)))
    return GridChoice(actions, best, per_group, table.mean(1))
