"""A3C on the decision log: warm-start the serving policy's fusion actor and improve it from what it
logged (the closed loop), instead of from simulator rollouts (models/algorithms/a3c.py).

Transitions come from joined decisions, grouped per user session (models/log/transitions.py). Seed 001's losses
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

from dataclasses import dataclass

import torch

from models.env.episodes import critic_net, td_advantage
from models.log.transitions import LoggedTransitions
from models.nets.actors import gaussian_log_prob
from models.nets.cascade import CascadePolicy


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
        actor_loss.backward()  # type: ignore[no-untyped-call]
        actor_opt.step()
        for opt in critic_opts:
            opt.zero_grad()
        critic_loss.backward()  # type: ignore[no-untyped-call]
        for opt in critic_opts:
            opt.step()
        actor_losses.append(actor_loss.item())
        critic_losses.append(critic_loss.item())
    policy.eval()
    with torch.no_grad():
        mean_ratio = float(torch.exp(fusion_log_prob(policy, log.state, log.raw_action) - behaviour).mean())
    return LoggedA3CReport(actor_losses, critic_losses, mean_ratio)
