"""Running a CascadePolicy through simulated sessions: transitions for the trainers, and evaluation.

Shared by every session-level method (a3c, multi_critic, lagrangian, two_stage, unex_rl, srs): each
imports `transitions` (the on-policy stream of (s, a, r, s', done) for B concurrent sessions, one
request per session per step; "A3C" here is the synchronous batched form: B sessions play the role of
the asynchronous workers) and `evaluate` (the served means on a fixed set of users, to the end of their
sessions), and keeps only its own losses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from models.env.rollout import RequestBatch, served_items
from models.nets.actors import FusionStep, gaussian_log_prob
from models.nets.cascade import CascadePolicy, Selection
from models.nets.networks import mlp
from models.sim.session import SessionConfig, Sessions, SessionStep
from models.sim.simulator import IntArray, Requests, Simulator


@dataclass(frozen=True)
class RunConfig:
    """Settings every session-level trainer shares (one dataclass per method adds its own)."""

    steps: int = 400  # updates; each consumes one request of each of the B sessions
    sessions: int = 256  # B concurrent sessions
    n_candidates: int = 100  # smaller pools than serving: a full table must train in minutes on 2 cores
    stage_sizes: tuple[int, int, int] = (60, 40, 20)
    k: int = 10
    actor_lr: float = 3e-3
    critic_lr: float = 3e-3
    session: SessionConfig = field(default_factory=SessionConfig)
    # Which reward the trainer sees: sampled responses (what real feedback gives) or E[r | s, a].
    reward: Literal["sampled", "expected"] = "sampled"
    noise_clip: float = 2.0  # |ε| clipped like the service does (manifest exploration.noise_clip)
    progress: bool = False  # tqdm bar


def critic_net(state_dim: int, hidden: int = 64) -> nn.Sequential:
    """V(s): the critic every A3C variant uses (one per objective in multi-critic)."""
    return mlp([state_dim, hidden, hidden, 1])


def to_batch(sim: Simulator, requests: Requests, sessions: Sessions, rng: np.random.Generator) -> RequestBatch:
    """Tensors of B requests; the state is user ⊕ context ⊕ session features."""
    predictions = sim.predictions(requests.users, requests.candidates, requests.context, rng)
    state = np.concatenate([requests.user_features, requests.context, sessions.session_features()], axis=1)
    return RequestBatch(
        requests=requests,
        state=torch.from_numpy(state),
        items=torch.from_numpy(sim.item_features[requests.candidates]),
        predictions=torch.from_numpy(predictions),
    )


@dataclass
class Transition:
    """One request of each of B sessions: s, the actions' log-probabilities, r per objective, s', done."""

    batch: RequestBatch
    selection: Selection  # stage observations/actions; log_prob of sampled stage actions (else zeros)
    fusion: FusionStep  # log_prob of the fusion draw (recomputed with the widened std when RND widens)
    items: np.ndarray  # [B, k] catalogue indices served
    step: SessionStep
    rewards: torch.Tensor  # [B, objectives] business-weighted, sampled or expected per RunConfig.reward
    next_batch: RequestBatch  # the same slots' next requests (a new user's where done: bootstrap is masked)
    done: torch.Tensor  # [B] float 0/1

    @property
    def next_state(self) -> torch.Tensor:
        return self.next_batch.state

    @property
    def state(self) -> torch.Tensor:
        return self.batch.state


def transitions(
    policy: CascadePolicy,
    sim: Simulator,
    rng: np.random.Generator,
    config: RunConfig,
    *,
    explore_fusion: bool = True,
    explore_stages: bool = False,
    fusion_action: torch.Tensor | None = None,
    widen: nn.Module | None = None,
) -> Iterator[Transition]:
    """Yield `config.steps` on-policy transitions of `config.sessions` concurrent sessions.

    The stage actors sample when `explore_stages` (else serve their mean); the fusion actor samples when
    `explore_fusion`, unless `fusion_action` [A] fixes the fusion weights for every request. `widen`
    (models.algorithms.rnd.ExplorationWidener) maps states to a per-request std multiplier ≥ 1.
    """
    sessions = sim.sessions(config.sessions, rng, config.session, config.n_candidates, refill=True)
    sizes, k = torch.tensor(config.stage_sizes), torch.tensor([config.k])
    n_objectives, action_dim = policy.config.n_objectives, policy.fusion.action_dim
    requests = sessions.requests()
    batch = to_batch(sim, requests, sessions, rng)
    for _ in range(config.steps):
        B = len(sessions)
        stage_noise = None
        if explore_stages:
            stage_noise = torch.from_numpy(rng.standard_normal((B, 3, n_objectives), dtype=np.float32))
        noise = np.zeros((B, action_dim), dtype=np.float32)
        if explore_fusion and fusion_action is None:
            noise = np.clip(
                rng.standard_normal((B, action_dim), dtype=np.float32), -config.noise_clip, config.noise_clip
            )
        noise_t = torch.from_numpy(noise)
        scale = None
        if widen is not None:
            with torch.no_grad():
                scale = widen(batch.state).unsqueeze(-1)  # [B, 1]
            noise_t = noise_t * scale
        with torch.set_grad_enabled(explore_stages):  # stages served at their mean need no graph
            selection = policy.select(batch.state, batch.items, sizes, k, stage_noise)
        fusion = policy.fusion(batch.state, noise_t)
        if scale is not None:  # the behaviour policy's density: std widened by the RND multiplier
            fusion = fusion._replace(log_prob=gaussian_log_prob(fusion.raw.detach(), fusion.mean, fusion.std * scale))
        action = fusion.action if fusion_action is None else fusion_action.expand(B, -1)
        with torch.no_grad():
            items = served_items(batch, selection, action, k)
        step = sessions.step(requests, items)
        rewards = step.objective_rewards if config.reward == "sampled" else step.expected_objective_rewards
        requests = sessions.requests()
        next_batch = to_batch(sim, requests, sessions, rng)
        yield Transition(
            batch=batch,
            selection=selection,
            fusion=fusion,
            items=items,
            step=step,
            rewards=torch.from_numpy(rewards.astype(np.float32)),
            next_batch=next_batch,
            done=torch.from_numpy(step.done.astype(np.float32)),
        )
        batch = next_batch


def td_advantage(
    critic: nn.Module,
    reward: torch.Tensor,
    state: torch.Tensor,
    next_state: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage r + γ·V(s') − V(s) detached, critic loss (r + γ·V(s') − V(s))²) — seed 001's A3C losses.

    V(s') is a constant of the critic loss (semi-gradient TD) and is 0 after the session ends.
    """
    value = critic(state).squeeze(-1)
    with torch.no_grad():
        next_value = critic(next_state).squeeze(-1) * (1.0 - done)
    td = reward + gamma * next_value - value
    return td.detach(), (td**2).mean()


def reward_scale(rewards: torch.Tensor) -> float:
    """Std of the total request reward in a first batch: every trainer divides rewards by it (fixed, so the
    advantages keep their signs and ratios; the learning rates do not depend on the reward's units)."""
    return float(rewards.sum(-1).std()) + 1e-8


def live_rows(batch: RequestBatch, active: np.ndarray) -> RequestBatch:
    """The rows of `batch` whose sessions are still running (`active` [B] bool)."""
    requests = batch.requests
    rows = torch.from_numpy(np.flatnonzero(active))
    live_requests = Requests(
        requests.users[active],
        requests.user_features[active],
        requests.context[active],
        requests.candidates[active],
    )
    return RequestBatch(live_requests, batch.state[rows], batch.items[rows], batch.predictions[rows])


FusionFn = Callable[[torch.Tensor], torch.Tensor]  # states [B, S] → fusion actions [B, A]


@dataclass(frozen=True)
class SessionOutcomes:
    """Per-user results of serving one policy to a fixed set of users until every session ends."""

    users: np.ndarray  # [U] catalogue user index of each session
    returns: np.ndarray  # [U] Σ_t business-weighted expected reward
    depth: np.ndarray  # [U] requests served
    totals: np.ndarray  # [U, J] per objective, summed expected responses
    p_return: np.ndarray  # [U] next-day return probability at the session's end (NaN in v1 worlds)


@torch.no_grad()
def session_outcomes(
    policy: CascadePolicy,
    sim: Simulator,
    config: RunConfig,
    *,
    users: int = 1000,
    seed: int = 12345,
    fusion_action: torch.Tensor | None = None,
    fusion_fn: FusionFn | None = None,
    user_ids: IntArray | None = None,
) -> SessionOutcomes:
    """Serve the policy's means (or the constant `fusion_action` [A], or `fusion_fn(state)`) to a fixed set
    of users until every session ends; `user_ids` [users] names them (default: drawn uniformly).

    Same `seed` → same users, contexts, candidate pools and leave draws (common random numbers), so two
    policies differ only by what they serve. Objectives are accumulated from expected responses.
    """
    rng = np.random.default_rng(seed)
    sessions = sim.sessions(users, rng, config.session, config.n_candidates, refill=False, users=user_ids)
    first_users = sessions.users.copy()
    sizes, k = torch.tensor(config.stage_sizes), torch.tensor([config.k])
    objectives = sim.config.objectives
    totals = np.zeros((users, len(objectives)))
    weighted = np.zeros(users)
    depth = np.zeros(users)
    p_return = np.full(users, np.nan)  # v2 worlds: next-day return probability at each session's end
    while sessions.active.any():
        active = sessions.active.copy()
        requests = sessions.requests()
        batch = to_batch(sim, requests, sessions, rng)
        # Only the sessions still running are served (ended rows keep placeholder items, never counted).
        live = live_rows(batch, active)
        n_live = len(live.requests)
        selection = policy.select(live.state, live.items, sizes, k)
        if fusion_fn is not None:
            action = fusion_fn(live.state)
        elif fusion_action is None:
            action = policy.fusion(live.state, torch.zeros(n_live, policy.fusion.action_dim)).action
        else:
            action = fusion_action.expand(n_live, -1)
        items = requests.candidates[:, : config.k].copy()
        items[active] = served_items(live, selection, action, k)
        step = sessions.step(requests, items)
        expected = step.responses.expected.sum(axis=1)  # [B, J] unweighted counts / minutes
        totals[active] += expected[active]
        weighted[active] += step.expected_objective_rewards[active].sum(-1)
        depth[active] += 1
        ended = getattr(step, "return_probability", None)
        if ended is not None:
            rows = active & step.done
            p_return[rows] = ended[rows]
    return SessionOutcomes(first_users, weighted, depth, totals, p_return)


def evaluate(
    policy: CascadePolicy,
    sim: Simulator,
    config: RunConfig,
    *,
    users: int = 1000,
    seed: int = 12345,
    fusion_action: torch.Tensor | None = None,
    fusion_fn: FusionFn | None = None,
) -> dict[str, float]:
    """Per-session means of `session_outcomes` (same arguments).

    Returns: return (Σ_t business-weighted reward), depth (requests per session), per objective the sum
    per session (`<name>`) and the mean per request (`<name>_per_request`).
    """
    o = session_outcomes(policy, sim, config, users=users, seed=seed, fusion_action=fusion_action, fusion_fn=fusion_fn)
    out = {"return": float(o.returns.mean()), "depth": float(o.depth.mean())}
    if not np.isnan(o.p_return).all():
        out["next_day_return"] = float(np.nanmean(o.p_return))
        # E[gap] of Geometric(p) truncated at 16 days (SIMULATOR.md, return model).
        d = np.arange(1, 17)
        pmf = o.p_return[:, None] * (1 - o.p_return[:, None]) ** (d - 1)
        out["return_gap_days"] = float(np.nanmean((pmf * d).sum(1) / pmf.sum(1)))
    for j, name in enumerate(sim.config.objectives):
        out[name] = float(o.totals[:, j].mean())
        out[f"{name}_per_request"] = float(o.totals[:, j].sum() / o.depth.sum())
    return out


@dataclass
class TrainLog:
    """What a session-level trainer records per update (written to the run folder by the experiment)."""

    rewards: list[float] = field(default_factory=list)  # mean raw request reward of the batch
    critic_losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)  # ||∇ actor loss|| of each update
    extra: dict[str, list[float]] = field(default_factory=dict)

    def record(self, t: Transition, critic_loss: float, grad_norm: float, **extra: float) -> None:
        self.rewards.append(float(t.rewards.sum(-1).mean()))
        self.critic_losses.append(critic_loss)
        self.grad_norms.append(grad_norm)
        for name, value in extra.items():
            self.extra.setdefault(name, []).append(value)


def grad_norm(parameters: list[nn.Parameter]) -> float:
    """Euclidean norm of the gradients now held by `parameters`."""
    norms = [p.grad.norm() ** 2 for p in parameters if p.grad is not None]
    return float(torch.stack(norms).sum().sqrt()) if norms else 0.0


def progress(iterable: Iterator[Transition], config: RunConfig, label: str) -> Iterator[Transition]:
    """tqdm over the transitions when `config.progress` (long runs), else the iterator itself."""
    if not config.progress:
        return iterable
    from tqdm import tqdm

    return iter(tqdm(iterable, total=config.steps, desc=label, leave=False))
