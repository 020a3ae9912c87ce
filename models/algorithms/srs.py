"""Stochastic reward stabilisation (seed 002, SRS / SRS2) around the session A3C of the fusion actor.

SRS: the observed request reward r (watch time with Gamma noise, follows at 1% worth 40 minutes each) is
replaced in the actor-critic update by its conditional expectation r̂ = E[r | s, a], predicted by a
supervised reward estimator trained on the same stream of (state, served item, sampled responses):

    r̂(s, a) = Σ_{served items i} Σ_j w_j·ŷ_j(s, x_i),     ŷ = estimator (BCE / squared error on y)

(a = the fusion action; given s and the candidates it determines the served items). SRS2: the estimator
and the agent share the state embedding e(s); only the supervised loss updates e ("we only use gradients
of the supervised task to update the embedding layer"): the actor and the critic see e(s) through a
stop-gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from models.algorithms.a3c import SessionA3CConfig, train_a3c
from models.env.episodes import TrainLog, Transition, critic_net
from models.nets.cascade import CascadePolicy
from models.nets.heads import MLPHead
from models.nets.networks import mlp
from models.sim.simulator import Simulator


class StopGradient(nn.Module):
    """module(x) as a constant for whoever consumes it: the shared embedding of SRS2."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(x)
        return out.detach()


class RewardEstimator(nn.Module):
    """ŷ_j(s, x) for every objective from an embedding e(s) and the item features."""

    def __init__(
        self, state_dim: int, item_dim: int, dense_mask: tuple[bool, ...], max_watch_time: float, embedding: int = 32
    ) -> None:
        super().__init__()
        self.embed = mlp([state_dim, 64, embedding])
        self.head = MLPHead(embedding, item_dim, dense_mask, max_watch_time, (64,))

    def losses(self, state: torch.Tensor, items: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        return self.head.objective_losses(self.embed(state), items, responses)

    def forward(self, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.embed(state), items)
        return out


@dataclass(frozen=True)
class SRSConfig:
    a3c: SessionA3CConfig = field(default_factory=SessionA3CConfig)
    shared_embedding: bool = False  # SRS2
    estimator_lr: float = 3e-3
    estimator_updates: int = 1  # supervised steps per RL step


def share_embedding(policy: CascadePolicy, estimator: RewardEstimator) -> nn.Module:
    """SRS2: route the fusion actor through the estimator's embedding (stop-gradient); returns the critic."""
    fusion, embedding = policy.fusion, estimator.embed[-1]
    assert isinstance(embedding, nn.Linear)
    width = embedding.out_features
    hidden = fusion.net[0]
    assert isinstance(hidden, nn.Linear)
    body = mlp([width, hidden.out_features, hidden.out_features, fusion.action_dim])
    last = body[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)  # start at the middle of the box, like FusionActor
    nn.init.zeros_(last.bias)
    fusion.net = nn.Sequential(StopGradient(estimator.embed), body)
    return nn.Sequential(StopGradient(estimator.embed), critic_net(width))


def train_srs(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: SRSConfig
) -> tuple[TrainLog, RewardEstimator]:
    """A3C on r̂ instead of r; the estimator learns online from the served items' sampled responses."""
    c = policy.config
    estimator = RewardEstimator(c.state_dim, c.item_dim, c.dense_mask, c.max_watch_time)
    critic = share_embedding(policy, estimator) if config.shared_embedding else None
    optimiser = torch.optim.Adam(estimator.parameters(), lr=config.estimator_lr)
    weights = torch.tensor(sim.config.business_weights, dtype=torch.float32)
    no_skill: list[torch.Tensor] = []

    def estimated_reward(t: Transition) -> torch.Tensor:
        items = torch.from_numpy(sim.item_features[t.items])
        responses = torch.from_numpy(t.step.responses.sampled.astype(np.float32))
        if not no_skill:  # each objective's loss in units of its no-skill loss (as models/algorithms/supervised.py)
            no_skill.append(1.0 / estimator.head.no_skill_losses(responses).clamp(min=1e-4))
        for _ in range(config.estimator_updates):
            loss = (estimator.losses(t.state, items, responses) * no_skill[0]).sum()
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
        with torch.no_grad():
            predicted: torch.Tensor = estimator(t.state, items)
            return (predicted * weights).sum(dim=(1, 2))  # r̂ = Σ_i Σ_j w_j·ŷ_j

    log = train_a3c(policy, sim, rng, config.a3c, reward_fn=estimated_reward, critic=critic)
    return log, estimator
