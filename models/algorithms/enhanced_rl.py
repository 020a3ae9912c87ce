"""EnhancedRL (seed 003): fusion weights per user-item pair from an enhanced state, q critic sets × m critics.

Enhanced state of a pair: user ⊕ context ⊕ session features (the request) ⊕ item features ⊕ the MTL
predictions of the item. The actor outputs a 2J-dimensional power/bias fusion vector per pair (J = the
simulator's objectives; seed 003's 10 = 2 × 5 here too), and the item's score is Σ_j w_j·log(p_j + b_j).

Critics: q = 2 sets of m = 10 critics of the pair-level value Q(x_i, a_i), trained at the list level: a
request's value is the mean over its k served items, regressed on r + γ·V'(s'), where V'(s') is the same
mean at the next request under the target actor, of min over sets (each set's mean over its m critics)
minus the OOD penalty β·std over all q·m critics. Soft target updates (τ). The actor maximises the same
penalised ensemble value on the replayed served pairs. Exploration: Gaussian noise per pair whose scale is
personalised by the ensemble's disagreement on the user's pairs (more where the critics disagree), clipped
to ±2σ(u) and to the action box: personalised exploration bounds.

Online in the simulator (models/env/offline_data.py's fusion-only serving), the same sessions the user-level actor
(models/algorithms/a3c.py) trains on.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from models.env.episodes import to_batch
from models.env.offline_data import OfflineConfig, serve
from models.nets.networks import PairMLP
from models.nets.twin_critic import soft_update
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class EnhancedRLConfig:
    offline: OfflineConfig = field(default_factory=OfflineConfig)  # world, sessions, N and k
    steps: int = 300  # environment steps (one request per session each) and updates
    sessions: int = 32
    q_sets: int = 2
    m_critics: int = 10
    hidden: int = 64
    gamma: float = 0.9
    tau: float = 0.01
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    batch: int = 64  # requests per update from the replay
    explore_std: float = 0.1  # base exploration σ, fraction of each action's range
    ood_beta: float = 0.5  # OOD penalty weight on the ensemble's std
    warmup: int = 20  # environment steps before the first update


class EnhancedActor(nn.Module):
    """(request state [B, S], items [B, N, I], predictions [B, N, J]) → per-pair actions [B, N, 2J] in the box."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(
        self,
        state_dim: int,
        item_dim: int,
        n_objectives: int,
        low: Sequence[float] | torch.Tensor,
        high: Sequence[float] | torch.Tensor,
        hidden: int = 64,
    ) -> None:
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
        self.net = PairMLP(state_dim, item_dim + n_objectives, [hidden, hidden], 2 * n_objectives)
        head = self.net.body[-1]
        assert isinstance(head, nn.Sequential)
        last = head[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)  # start at the middle of the box, as the user-level FusionActor does
        nn.init.zeros_(last.bias)

    def forward(self, state: torch.Tensor, items: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
        x = torch.cat([items, predictions], dim=-1)
        return self.low + (self.high - self.low) * torch.sigmoid(self.net(state, x))


class CriticEnsemble(nn.Module):
    """q·m independent MLP critics Q_e(x, a) evaluated in one batched pass; output [q, m, ...]."""

    def __init__(self, in_dim: int, q_sets: int, m_critics: int, hidden: int) -> None:
        super().__init__()
        self.q_sets, self.m_critics = q_sets, m_critics
        e = q_sets * m_critics
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in ((in_dim, hidden), (hidden, hidden), (hidden, 1)):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(e, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(e, 1, fan_out).uniform_(-bound, bound)))

    @property
    def shape(self) -> tuple[int, int]:
        return self.q_sets, self.m_critics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [P, D] pair features ⊕ actions → Q [q, m, P]."""
        h = x.unsqueeze(0).expand(self.q_sets * self.m_critics, -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h.squeeze(-1).view(self.q_sets, self.m_critics, -1)


def pair_inputs(
    state: torch.Tensor, items: torch.Tensor, predictions: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Enhanced pair state ⊕ action: [B, K, S + I + J + 2J] flattened to [B·K, ·]."""
    b, k = items.shape[:2]
    x = torch.cat([state.unsqueeze(1).expand(-1, k, -1), items, predictions, actions], dim=-1)
    return x.reshape(b * k, -1)


def penalised_value(q: torch.Tensor, beta: float) -> torch.Tensor:
    """min over sets of each set's mean over its m critics, minus β·std over all q·m critics (the OOD penalty)."""
    set_means = q.mean(dim=1)  # [q, P]
    spread = q.flatten(0, 1).std(dim=0)  # [P]
    return set_means.min(dim=0).values - beta * spread


def ood_penalty(critics: CriticEnsemble, x: torch.Tensor) -> torch.Tensor:
    """Std over all q·m critics of Q(x): what the penalty weights (grows off the data's support)."""
    q: torch.Tensor = critics(x)
    return q.flatten(0, 1).std(dim=0)


@dataclass
class EnhancedTraining:
    rewards: list[float]
    critic_losses: list[float]
    explore_scale: list[float]  # mean personalised σ multiplier of each step


def _top_rows(actions: torch.Tensor, predictions: torch.Tensor, k: int) -> torch.Tensor:
    w, b = actions.chunk(2, dim=-1)
    scores = (w * torch.log(predictions.clamp(min=0.0) + b)).sum(-1)
    return torch.topk(scores, k, dim=1).indices


def _gather(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, 1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def train_enhanced_rl(
    actor: EnhancedActor, sim: Simulator, rng: np.random.Generator, config: EnhancedRLConfig
) -> tuple[CriticEnsemble, EnhancedTraining]:
    off = config.offline
    j = sim.config.n_objectives
    state_dim = actor.net.user_in.in_features
    critics = CriticEnsemble(
        state_dim + sim.config.item_dim + j + 2 * j, config.q_sets, config.m_critics, config.hidden
    )
    critics_t, actor_t = copy.deepcopy(critics), copy.deepcopy(actor)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=config.actor_lr)
    critic_opt = torch.optim.Adam(critics.parameters(), lr=config.critic_lr)
    span = actor.high - actor.low
    sessions = sim.sessions(config.sessions, rng, off.session, off.n_candidates, refill=True)
    requests = sessions.requests()
    batch = to_batch(sim, requests, sessions, rng)
    replay: list[dict[str, torch.Tensor]] = []
    out = EnhancedTraining([], [], [])
    scale: float | None = None
    spread_avg: float | None = None
    k = off.k
    for step in range(config.steps):
        with torch.no_grad():
            mean = actor(batch.state, batch.items, batch.predictions)
            # Personalised exploration: σ(u) = base·range·clip(disagreement(u) / average, 0.5, 2).
            rows = _top_rows(mean, batch.predictions, k)
            x = pair_inputs(
                batch.state, _gather(batch.items, rows), _gather(batch.predictions, rows), _gather(mean, rows)
            )
            spread = ood_penalty(critics, x).view(-1, k).mean(-1)
            spread_avg = float(spread.mean()) if spread_avg is None else 0.95 * spread_avg + 0.05 * float(spread.mean())
            mult = (spread / (spread_avg + 1e-8)).clamp(0.5, 2.0)
            sigma = config.explore_std * span * mult.view(-1, 1, 1)
            noise = torch.maximum(torch.minimum(torch.randn_like(mean) * sigma, 2 * sigma), -2 * sigma)
            action = torch.minimum(torch.maximum(mean + noise, actor.low), actor.high)
        items = serve(batch, action, k)
        rows = _top_rows(action, batch.predictions, k)
        session_step = sessions.step(requests, items)
        reward = session_step.objective_rewards.sum(-1)
        scale = scale or float(reward.std()) + 1e-8
        requests = sessions.requests()
        next_batch = to_batch(sim, requests, sessions, rng)
        for i in range(len(reward)):
            replay.append(
                {
                    "state": batch.state[i],
                    "items": _gather(batch.items, rows)[i],
                    "predictions": _gather(batch.predictions, rows)[i],
                    "action": _gather(action, rows)[i],
                    "reward": torch.tensor(reward[i] / scale, dtype=torch.float32),
                    "next_state": next_batch.state[i],
                    "next_items": next_batch.items[i],
                    "next_predictions": next_batch.predictions[i],
                    "done": torch.tensor(float(session_step.done[i])),
                }
            )
        batch = next_batch
        out.rewards.append(float(reward.mean()))
        out.explore_scale.append(float(mult.mean()))
        if step < config.warmup:
            continue
        pick = rng.integers(0, len(replay), size=config.batch)
        mb = {key: torch.stack([replay[p][key] for p in pick]) for key in replay[0]}
        with torch.no_grad():
            next_action = actor_t(mb["next_state"], mb["next_items"], mb["next_predictions"])
            next_rows = _top_rows(next_action, mb["next_predictions"], k)
            x_next = pair_inputs(
                mb["next_state"],
                _gather(mb["next_items"], next_rows),
                _gather(mb["next_predictions"], next_rows),
                _gather(next_action, next_rows),
            )
            v_next = penalised_value(critics_t(x_next), config.ood_beta).view(-1, k).mean(-1)
            y = mb["reward"] + config.gamma * (1.0 - mb["done"]) * v_next
        q = critics(pair_inputs(mb["state"], mb["items"], mb["predictions"], mb["action"]))  # [q, m, B·k]
        q_list = q.view(config.q_sets, config.m_critics, -1, k).mean(-1)  # list level: mean over served items
        critic_loss = ((q_list - y) ** 2).mean()
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()

        # Actor: the penalised ensemble value of its own actions on the replayed served pairs.
        new_action = actor(mb["state"], mb["items"], mb["predictions"])
        x_new = pair_inputs(mb["state"], mb["items"], mb["predictions"], new_action)
        actor_loss = -penalised_value(critics(x_new), config.ood_beta).mean()
        actor_opt.zero_grad()
        actor_loss.backward()  # type: ignore[no-untyped-call]
        actor_opt.step()
        critics.zero_grad()
        soft_update(critics_t, critics, config.tau)
        soft_update(actor_t, actor, config.tau)
        out.critic_losses.append(float(critic_loss.detach()))
    return critics, out
