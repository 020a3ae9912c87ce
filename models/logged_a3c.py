"""A3C on the decision log: warm-start the serving policy's fusion actor and improve it from what it
logged (issue 8's loop), instead of from simulator rollouts (models/a3c.py).

Transitions come from joined decisions (models/reward_join.py), grouped per user session: a user's
next decision within `session_gap_seconds` is s', otherwise the session is done. Seed 001's losses
with the behaviour policy's logged propensity μ(a|s):

    actor   −min(ρ·A, clip(ρ, 1−ε, 1+ε)·A),  ρ = π(a|s) / μ(a|s),  A = r + γ·V(s') − V(s)
    critic  (r + γ·V(s') − V(s))²

The importance ratio ρ corrects for learning from another policy's actions; clipping it (PPO's
surrogate) keeps the update near the logged behaviour, where the log says anything about rewards.
Only decisions that explored train the actor: the service serves the mean otherwise, a point mass
whose logged density is not its propensity (and whose score for the mean is zero anyway). The
prediction heads and stage actors stay frozen: the log holds no propensity for the stage actions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from models.actors import gaussian_log_prob
from models.cascade import CascadePolicy
from models.episodes import critic_net, td_advantage
from models.reward_join import JoinedDecision


@dataclass(frozen=True)
class CandidateReplay:
    """The candidates of logged decisions, when the service logged their matrices
    (CASCADE_LOG_CANDIDATE_FEATURES): enough to replay each request's cascade with another fusion action
    (models/replay.py). Every decision needs the same candidate count; row i ↔ the log's row i."""

    items: torch.Tensor  # [N, C, item_dim] the candidates' features, as served
    predictions: torch.Tensor  # [N, C, J] the upstream MTL model's predictions, as served
    served_rows: torch.Tensor  # [N, k] candidate rows of the served items, best first
    stage_sizes: tuple[int, ...]  # the stages' keep, as logged
    k: int

    def subset(self, rows: torch.Tensor) -> CandidateReplay:
        return CandidateReplay(
            self.items[rows], self.predictions[rows], self.served_rows[rows], self.stage_sizes, self.k
        )


@dataclass(frozen=True)
class LoggedTransitions:
    """Served decisions of a log as (s, a, μ(a|s), r, s', done), one row each (the explored ones only,
    unless built with `explored_only=False`)."""

    request_ids: list[str]
    user_ids: list[str]
    state: torch.Tensor  # [N, S] the fusion actor's input, as logged
    raw_action: torch.Tensor  # [N, A] the Gaussian draw the propensity refers to
    behaviour_log_prob: torch.Tensor  # [N] log μ(raw | s), logged unrounded
    reward: torch.Tensor  # [N] joined reward
    next_state: torch.Tensor  # [N, S]
    done: torch.Tensor  # [N] 1.0 at the end of a session
    explored: torch.Tensor | None = None  # [N] bool: the row's action was a Gaussian draw (has a propensity)
    replay: CandidateReplay | None = None  # the rows' candidates, if the log holds them

    def __len__(self) -> int:
        return len(self.request_ids)

    def subset(self, mask: np.ndarray) -> LoggedTransitions:
        rows = torch.from_numpy(np.flatnonzero(mask))
        keep = mask.tolist()
        return LoggedTransitions(
            request_ids=[r for r, k in zip(self.request_ids, keep, strict=True) if k],
            user_ids=[u for u, k in zip(self.user_ids, keep, strict=True) if k],
            state=self.state[rows],
            raw_action=self.raw_action[rows],
            behaviour_log_prob=self.behaviour_log_prob[rows],
            reward=self.reward[rows],
            next_state=self.next_state[rows],
            done=self.done[rows],
            explored=None if self.explored is None else self.explored[rows],
            replay=None if self.replay is None else self.replay.subset(rows),
        )

    def explored_rows(self) -> LoggedTransitions:
        """The rows whose action was explored: the only ones with a usable propensity."""
        if self.explored is None:
            return self
        return self.subset(self.explored.numpy())


SessionRow = tuple[JoinedDecision, list[float], bool]  # (decision, s' as the fusion state, done)


def session_rows(joined: list[JoinedDecision], session_gap_seconds: float = 300.0) -> list[SessionRow]:
    """Served decisions grouped per user session, in time order: a user's next decision within
    `session_gap_seconds` gives s', otherwise the session is done (s' = s, never bootstrapped)."""
    served = [j for j in joined if j.decision.arm != "shadow"]
    by_user: dict[str, list[JoinedDecision]] = defaultdict(list)
    for item in served:
        by_user[item.decision.user_id].append(item)
    rows: list[SessionRow] = []
    for decisions in by_user.values():
        decisions.sort(key=lambda j: j.decision.time)
        for current, following in zip(decisions, [*decisions[1:], None], strict=True):
            same_session = (
                following is not None and following.decision.time - current.decision.time <= session_gap_seconds
            )
            next_state = (
                following.decision.fusion.state if same_session and following else current.decision.fusion.state
            )
            rows.append((current, next_state, not same_session))
    return rows


def build_transitions(
    joined: list[JoinedDecision], session_gap_seconds: float = 300.0, explored_only: bool = True
) -> LoggedTransitions:
    """Per-user sessions of the served decisions, then the explored ones (all, without `explored_only`)
    as transitions."""
    rows = session_rows(joined, session_gap_seconds)
    if explored_only:
        rows = [row for row in rows if row[0].decision.explored]
    if not rows:
        raise ValueError("no explored, served decisions in the log: nothing to learn from")

    def tensor(values: list[object]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32)

    return LoggedTransitions(
        request_ids=[j.decision.request_id for j, _, _ in rows],
        user_ids=[j.decision.user_id for j, _, _ in rows],
        state=tensor([j.decision.fusion.state for j, _, _ in rows]),
        raw_action=tensor([j.decision.fusion.raw_action for j, _, _ in rows]),
        behaviour_log_prob=torch.tensor([j.decision.log_prob for j, _, _ in rows], dtype=torch.float64),
        reward=tensor([j.reward for j, _, _ in rows]),
        next_state=tensor([s for _, s, _ in rows]),
        done=tensor([float(d) for _, _, d in rows]),
        explored=torch.tensor([j.decision.explored for j, _, _ in rows], dtype=torch.bool),
        replay=_candidate_replay([j for j, _, _ in rows]),
    )


def _candidate_replay(rows: list[JoinedDecision]) -> CandidateReplay | None:
    """The rows' logged candidate matrices, or None unless every row has them with one candidate count."""
    decisions = [j.decision for j in rows]
    candidates = [d.candidates for d in decisions]
    if any(c.features is None or c.predictions is None for c in candidates):
        return None
    if len({len(c.ids) for c in candidates}) != 1 or len({d.k for d in decisions}) != 1:
        return None
    stage_sizes = {tuple(stage.keep for stage in d.stages) for d in decisions}
    if len(stage_sizes) != 1:
        return None
    served_rows = []
    for d in decisions:
        row_of = {item_id: i for i, item_id in enumerate(d.candidates.ids)}
        served_rows.append([row_of[item_id] for item_id in d.served_ids])
    if len({len(r) for r in served_rows}) != 1:
        return None
    return CandidateReplay(
        items=torch.tensor([c.features for c in candidates], dtype=torch.float32),
        predictions=torch.tensor([c.predictions for c in candidates], dtype=torch.float32),
        served_rows=torch.tensor(served_rows, dtype=torch.long),
        stage_sizes=stage_sizes.pop(),
        k=decisions[0].k,
    )


@dataclass(frozen=True)
class LoggedA3CConfig:
    epochs: int = 200  # full passes over the log (it is small: one iteration's explored decisions)
    actor_lr: float = 3e-3
    critic_lr: float = 1e-2
    gamma: float = 0.0  # the demo world is request-level (no session features in the state)
    clip: float = 0.2  # ε of the clipped importance ratio
    seed: int = 0


@dataclass(frozen=True)
class LoggedA3CReport:
    actor_losses: list[float]
    critic_losses: list[float]
    mean_ratio: float  # E[ρ] on the log after training (1.0 before): how far the policy moved

    def as_dict(self) -> dict[str, object]:
        return {
            "actor_loss": [self.actor_losses[0], self.actor_losses[-1]],
            "critic_loss": [self.critic_losses[0], self.critic_losses[-1]],
            "mean_ratio": self.mean_ratio,
        }


def fusion_log_prob(policy: CascadePolicy, state: torch.Tensor, raw_action: torch.Tensor) -> torch.Tensor:
    """log π(raw | s) of the policy's fusion Gaussian (the density the service logs as the propensity)."""
    step = policy.fusion(state, torch.zeros_like(raw_action))
    return gaussian_log_prob(raw_action, step.mean, step.std)


def train_on_log(policy: CascadePolicy, log: LoggedTransitions, config: LoggedA3CConfig) -> LoggedA3CReport:
    """Improve `policy`'s fusion actor in place from logged transitions (the clipped, weighted A3C above).
    Seeded by `config.seed`; the caller's torch RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _train_on_log(policy, log, config)


def _train_on_log(policy: CascadePolicy, log: LoggedTransitions, config: LoggedA3CConfig) -> LoggedA3CReport:
    # Cross-fitted critics: each log row appears once, so a critic trained on a row learns its reward and
    # leaves an advantage of ~0 there. Critic f is fitted on the other fold and gives fold f's advantages.
    fold = torch.arange(len(log)) % 2
    critics = [critic_net(policy.config.state_dim) for _ in range(2)]
    actor_params = list(policy.fusion.parameters())
    actor_opt = torch.optim.Adam(actor_params, lr=config.actor_lr)
    critic_opts = [torch.optim.Adam(c.parameters(), lr=config.critic_lr) for c in critics]
    # Standardised rewards: the learning rates do not depend on the reward's units (a fixed affine map).
    reward = (log.reward - log.reward.mean()) / (log.reward.std() + 1e-8)
    behaviour = log.behaviour_log_prob.float()
    actor_losses, critic_losses = [], []
    policy.train()
    for _ in range(config.epochs):
        advantage = torch.empty_like(reward)
        critic_loss = torch.zeros(())
        for f, critic in enumerate(critics):
            fit, use = fold != f, fold == f
            _, loss = td_advantage(
                critic, reward[fit], log.state[fit], log.next_state[fit], log.done[fit], config.gamma
            )
            advantage[use], _ = td_advantage(
                critic, reward[use], log.state[use], log.next_state[use], log.done[use], config.gamma
            )
            critic_loss = critic_loss + loss / 2
        ratio = torch.exp(fusion_log_prob(policy, log.state, log.raw_action) - behaviour)
        clipped = ratio.clamp(1.0 - config.clip, 1.0 + config.clip)
        actor_loss = -torch.minimum(ratio * advantage, clipped * advantage).mean()
        actor_opt.zero_grad()
        actor_loss.backward()
        actor_opt.step()
        for opt in critic_opts:
            opt.zero_grad()
        critic_loss.backward()
        for opt in critic_opts:
            opt.step()
        actor_losses.append(actor_loss.item())
        critic_losses.append(critic_loss.item())
    policy.eval()
    with torch.no_grad():
        mean_ratio = float(torch.exp(fusion_log_prob(policy, log.state, log.raw_action) - behaviour).mean())
    return LoggedA3CReport(actor_losses, critic_losses, mean_ratio)
