"""UNEX-RL (seed 000): one actor per stage, unidirectional execution, a global critic, CIC, SG and CQR.

Matching → pre-ranking → ranking each have an actor π_i(a_i | τ^i) whose action weights the stage's
prediction heads (models/nets/cascade.py); the fusion weights are held fixed (the CEM action). Training is
actor-critic with deterministic actors (the paper's global critic Q_g evaluates joint observations and
actions) on replayed sessions:

- Global critic: L(ϕ) = E_D[(y_g − Q_g(τ^{1:N}, a^{1:N}; ϕ))²], y_g = r + γ·Q_g'(τ'^{1:N}, π(τ'^{1:N})).
- Cascading information chain (CIC): τ^{i+1} = P^{i+1}(τ^i, a^i). The replay stores only τ^1 (the
  request: user state and candidates) and the actions; every downstream observation is rebuilt by
  running the cascade (`CascadePolicy.select(..., stage_actions=...)` for stored actions, the actors
  themselves for the actor update), so downstream actors never train on observations that their
  current upstream actors would not produce (the observation-dependency problem).
- Stop-gradient (SG): the actor gradient of stage i reaches a_i through Q_g's action input only, not
  through the downstream observations (our P^i is a top-k, so that path is also not differentiable).
  `cascade_gradient=True` keeps that path instead (the cascading effect), through a straight-through
  relaxation of each cut (`relaxed_execution`), and logs its share of every actor step.
- Category-quantile rescaling (CQR): r̃ = Φ(r | G_u), the reward's quantile among recent rewards of the
  user's category (quartiles of a user feature). The reward is request-level here, so there is no item
  category G_i.

`independent=True` is the baseline: per-stage critics Q_i(τ^i, a^i), each actor trained on the stored
τ^i of the replay (no CIC), no CQR — independent single-agent learners that share the system reward.
"""

from __future__ import annotations

import collections
import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from models.env.episodes import RunConfig, TrainLog, Transition, grad_norm, progress, reward_scale, transitions
from models.nets.cascade import CascadePolicy
from models.nets.networks import mlp
from models.sim.simulator import Simulator


@dataclass(frozen=True)
class UnexConfig:
    run: RunConfig = field(default_factory=lambda: RunConfig(actor_lr=1e-3))
    gamma: float = 0.95
    independent: bool = False  # the baseline: per-stage critics on stored observations, no CIC, no CQR
    # The cascading-effect gradient: the actors' update also follows how each action changes the downstream
    # observations (`relaxed_execution`) instead of stopping the gradient there (the paper's SG).
    cascade_gradient: bool = False
    cqr: bool = True
    replay: int = 16  # batches kept
    updates: int = 2  # gradient steps per collected batch (one on the newest batch, the rest replayed)
    target_tau: float = 0.05  # Polyak rate of the target critic
    cqr_window: int = 4096
    hidden: int = 128


class CategoryQuantileRescaler:
    """CQR: r ↦ Φ(r | G_u) − ½, Φ the empirical CDF of the recent rewards of the user's category."""

    def __init__(self, edges: np.ndarray, window: int) -> None:
        self.edges = edges  # inner quantile edges of the category feature
        self.history: list[collections.deque[float]] = [collections.deque(maxlen=window) for _ in range(len(edges) + 1)]

    def category(self, feature: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges, feature)

    def __call__(self, reward: np.ndarray, feature: np.ndarray) -> np.ndarray:
        groups, out = self.category(feature), np.empty_like(reward)
        for g in np.unique(groups):
            rows = groups == g
            self.history[g].extend(reward[rows].tolist())
            past = np.sort(np.fromiter(self.history[g], dtype=np.float64))
            out[rows] = np.searchsorted(past, reward[rows], side="right") / len(past) - 0.5
        return out


def rebuild(
    policy: CascadePolicy, state: torch.Tensor, items: torch.Tensor, actions: torch.Tensor, config: RunConfig
) -> torch.Tensor:
    """CIC: the observations [B, 3, obs_dim] of all stages from τ^1 (state, candidates) and the actions."""
    sizes, k = torch.tensor(config.stage_sizes), torch.tensor([config.k])
    with torch.no_grad():
        return policy.select(state, items, sizes, k, stage_actions=actions).observations


def _spread(score: torch.Tensor, arrived: torch.Tensor) -> torch.Tensor:
    """The std [B, 1] of each row's scores over the candidates that reached the stage."""
    count = arrived.sum(1, keepdim=True)
    mean = (score * arrived).sum(1, keepdim=True) / count
    return torch.sqrt((((score - mean) * arrived) ** 2).sum(1, keepdim=True) / count)


def relaxed_execution(
    policy: CascadePolicy,
    state: torch.Tensor,
    items: torch.Tensor,
    sizes: torch.Tensor,
    k: torch.Tensor,
    temperature: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The current actors' unidirectional execution, (observations [B, 3, obs], actions [B, 3, J]), with the
    cascading effect differentiable: the forward pass is exactly the hard cascade (each stage keeps its top
    candidates and the next observation is the mean of their features), while the backward pass sees each
    cut as a sigmoid of (score − cut) / (temperature·std of the scores), a straight-through estimator of
    how a stage's action moves what the next stages observe and therefore do (∂τ^{i+1}/∂a_i)."""
    member = torch.ones_like(items[..., 0])  # [B, N]: which candidates reach the stage (1/0 forward)
    observations, actions = [], []
    k0 = k.reshape(())
    for i, actor in enumerate(policy.stage_actors):
        weight = member.unsqueeze(-1)
        observation = torch.cat([state, (weight * items).sum(1) / weight.sum(1)], dim=-1)
        action = actor(observation)
        score = (policy.stage_values(i, state, items) * action.unsqueeze(1)).sum(-1)
        arrived = member.detach() > 0.5
        kept = int(policy.keep(arrived[0].sum(), sizes[i], k0))
        ranked = score.masked_fill(~arrived, float("-inf"))
        top = torch.topk(ranked, min(kept + 1, int(arrived[0].sum())), dim=1)
        hard = torch.zeros_like(score).scatter(1, top.indices[:, :kept], 1.0)
        if top.values.shape[1] > kept:  # the cut halfway between the last kept score and the first dropped
            cut = 0.5 * (top.values[:, kept - 1] + top.values[:, kept]).detach().unsqueeze(1)
            scale = temperature * _spread(score.detach(), arrived).clamp(min=1e-6)
            soft = torch.sigmoid((score - cut) / scale) * arrived
            member = member * (hard + soft - soft.detach())
        else:  # nothing dropped: the membership does not depend on the action
            member = member * hard
        observations.append(observation)
        actions.append(action)
    return torch.stack(observations, dim=1), torch.stack(actions, dim=1)


def _critic(width: int, hidden: int) -> nn.Sequential:
    return mlp([width, hidden, hidden, 1])


@dataclass
class _Stored:
    state: torch.Tensor
    items: torch.Tensor
    observations: torch.Tensor  # as executed (the independent learners train on these)
    actions: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    next_state: torch.Tensor
    next_items: torch.Tensor


def train_stages(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: UnexConfig, fusion_action: torch.Tensor
) -> TrainLog:
    """UNEX-RL (default) or independent stage learners (`config.independent`) with a fixed fusion action."""
    run, c = config.run, policy.config
    sizes, k = torch.tensor(run.stage_sizes), torch.tensor([run.k])
    J = c.n_objectives
    if config.independent:
        critics = nn.ModuleList([_critic(c.obs_dim + J, config.hidden) for _ in range(3)])
    else:
        critics = nn.ModuleList([_critic(3 * (c.obs_dim + J), config.hidden)])  # Q_g(τ^{1:3}, a^{1:3})
    target = copy.deepcopy(critics).requires_grad_(False)
    actor_params = list(policy.stage_actors.parameters())
    actor_opt = torch.optim.Adam(actor_params, lr=run.actor_lr)
    critic_opt = torch.optim.Adam(critics.parameters(), lr=run.critic_lr)
    feature = sim.user_features[:, 0]
    cqr = CategoryQuantileRescaler(np.quantile(feature, [0.25, 0.5, 0.75]), config.cqr_window)
    replay: collections.deque[_Stored] = collections.deque(maxlen=config.replay)
    log, scale = TrainLog(), None

    def q_values(observations: torch.Tensor, actions: torch.Tensor, nets: nn.ModuleList) -> torch.Tensor:
        joint = torch.cat([observations, actions], dim=-1)  # [B, 3, obs + J]
        if config.independent:
            return torch.cat([net(joint[:, i]) for i, net in enumerate(nets)], dim=-1)  # [B, 3]
        joint_q: torch.Tensor = nets[0](joint.flatten(1))  # [B, 1]
        return joint_q

    shares: list[float] = []  # the cascading effect's share of each actor step (`cascade_gradient` only)

    def update(d: _Stored) -> tuple[float, float]:
        with torch.no_grad():  # y = r + γ·Q'(τ', π(τ')): τ' rebuilt by running the current actors (CIC)
            nxt = policy.select(d.next_state, d.next_items, sizes, k)
            y = d.reward.unsqueeze(-1) + config.gamma * (1 - d.done).unsqueeze(-1) * q_values(
                nxt.observations, nxt.actions, target
            )
        observations = d.observations if config.independent else rebuild(policy, d.state, d.items, d.actions, run)
        critic_loss = ((y - q_values(observations, d.actions, critics)) ** 2).mean()
        critic_opt.zero_grad()
        critic_loss.backward()  # type: ignore[no-untyped-call]
        critic_opt.step()
        if config.independent:  # each actor on its stored observation: a_i = π_i(τ^i_stored)
            actions = torch.stack([actor(d.observations[:, i]) for i, actor in enumerate(policy.stage_actors)], dim=1)
            q = q_values(d.observations, actions, critics)
        elif config.cascade_gradient:  # CIC, and the gradient through the downstream observations kept
            observations, actions = relaxed_execution(policy, d.state, d.items, sizes, k)
            q = q_values(observations, actions, critics)
        else:  # unidirectional execution with the current actors (CIC), SG through the observations
            current = policy.select(d.state, d.items, sizes, k)
            q = q_values(current.observations.detach(), current.actions, critics)
        actor_loss = -q.mean()
        actor_opt.zero_grad()
        actor_loss.backward()  # type: ignore[no-untyped-call]
        norm = grad_norm(actor_params)
        if config.cascade_gradient:  # how much of the step is the cascading effect: ‖g − g_SG‖ / ‖g‖
            full = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in actor_params]
            # The SG step from the same forward pass: every actor on its observation as a constant.
            fixed = observations.detach()
            stopped_actions = torch.stack([actor(fixed[:, i]) for i, actor in enumerate(policy.stage_actors)], dim=1)
            stopped = torch.autograd.grad(
                -q_values(fixed, stopped_actions, critics).mean(), actor_params, allow_unused=True
            )
            g_sg = [torch.zeros_like(p) if g is None else g for p, g in zip(actor_params, stopped, strict=True)]
            diff = torch.stack([((a - b) ** 2).sum() for a, b in zip(full, g_sg, strict=True)]).sum().sqrt()
            shares.append(float(diff) / max(norm, 1e-12))
        actor_opt.step()
        critics.zero_grad()
        with torch.no_grad():
            for p, p_target in zip(critics.parameters(), target.parameters(), strict=True):
                p_target.lerp_(p, config.target_tau)
        return critic_loss.item(), norm

    stream = transitions(policy, sim, rng, run, explore_fusion=False, explore_stages=True, fusion_action=fusion_action)
    t: Transition
    for t in progress(stream, run, "independent" if config.independent else "unex-rl"):
        raw = t.rewards.sum(-1)
        scale = scale or reward_scale(t.rewards)
        if config.cqr and not config.independent:
            reward = torch.from_numpy(
                cqr(raw.numpy().astype(np.float64), feature[t.batch.requests.users]).astype(np.float32)
            )
        else:
            reward = raw / scale
        replay.append(
            _Stored(
                t.state, t.batch.items, t.selection.observations.detach(), t.selection.actions.detach(),
                reward, t.done, t.next_state, t.next_batch.items,
            )
        )  # fmt: skip
        losses = [update(replay[-1])]
        for _ in range(config.updates - 1):
            losses.append(update(replay[int(rng.integers(len(replay)))]))
        extra = {"cascade_share": float(np.mean(shares[-len(losses) :]))} if shares else {}
        log.record(t, float(np.mean([x[0] for x in losses])), float(np.mean([x[1] for x in losses])), **extra)
    return log
