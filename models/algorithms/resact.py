"""ResAct (seed 004): reconstruct the online policy's actions with a CVAE, improve each with a residual
actor, pick the best with the critic. Trained offline on a log of decisions (models/env/offline_data.py).

Seed 004, "Workflow of ResAct" and the equations beside the code below:
    reconstruction  ã_on^i = D(s, c^i),  c^i ~ N(0, 1), i = 1..n
    prediction      ã^i = ã_on^i + f(Δ | s, ã_on^i),  z_h = f_h(s_h), z_l = f_l(s_l), Δ = f_a(z, a)
    selection       c* = argmax_c Q1(s, π̂(s, c))

The latent draws c are an input of `ResActPolicy.forward`, so the exported graph takes them from the
service, which logs them: a logged decision replays exactly. Session-level state s_h = user ⊕ session
features, request-level s_l = the request context (the paper's bi-level state). Not implemented: the
paper's mutual-information losses on z_h (L^Exp, L^Con).

The same module with `bcq=True` is the BCQ-style baseline (Fujimoto et al. 2019): the decoder learns from
reconstruction only, latents clipped to [−0.5, 0.5], the perturbation sees the whole state (no bi-level
split), and the critic's target takes the best of the n candidates under λ·min + (1 − λ)·max of Q1, Q2.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.env.offline_data import OfflineLog
from models.nets.networks import mlp
from models.nets.twin_critic import TransitionSampler, TwinCritic, critic_loss, soft_update


@dataclass(frozen=True)
class ResActConfig:
    steps: int = 3000
    batch: int = 256
    latent_dim: int = 8
    n_draws: int = 10  # n latent draws → n reconstructed → n improved candidates
    hidden: int = 64
    residual_scale: float = 0.1  # |Δ| ≤ scale·range: "broadly consistent to, but better than" the online policy
    gamma: float = 0.9
    tau: float = 0.005
    lr: float = 1e-3
    kl_weight: float = 0.5
    policy_delay: int = 2  # TD3: actor and targets every 2 critic updates
    target_noise: float = 0.05  # TD3 target smoothing, a fraction of the range
    bcq: bool = False
    bcq_lambda: float = 0.75


@dataclass(frozen=True)
class StateLayout:
    """Which columns of the state are session-level (s_h) and request-level (s_l)."""

    session: tuple[int, ...]
    request: tuple[int, ...]

    @classmethod
    def from_dims(cls, user_dim: int, context_dim: int, session_dim: int) -> StateLayout:
        # state = user ⊕ context ⊕ session features (episodes.to_batch)
        user = tuple(range(user_dim))
        context = tuple(range(user_dim, user_dim + context_dim))
        session = tuple(range(user_dim + context_dim, user_dim + context_dim + session_dim))
        return cls(session=user + session, request=context)


class CVAE(nn.Module):
    """E(c | s, a_on), D(a | s, c): L^Rec = (D(s, c) − a_on)² + KL(E(s, a_on) ‖ N(0, 1))."""

    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, state_dim: int, low: torch.Tensor, high: torch.Tensor, latent_dim: int, hidden: int) -> None:
        super().__init__()
        action_dim = low.numel()
        self.register_buffer("low", low.clone())
        self.register_buffer("high", high.clone())
        self.latent_dim = latent_dim
        self.encoder = mlp([state_dim + action_dim, hidden, hidden, 2 * latent_dim])
        self.decoder = mlp([state_dim + latent_dim, hidden, hidden, action_dim])

    def decode(self, state: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """D(s, c) squashed into the action box."""
        return self.low + (self.high - self.low) * torch.sigmoid(self.decoder(torch.cat([state, latent], -1)))

    def loss(self, state: torch.Tensor, action: torch.Tensor, kl_weight: float) -> torch.Tensor:
        encoded: torch.Tensor = self.encoder(torch.cat([state, action], -1))
        mean, log_std = encoded.chunk(2, -1)
        log_std = log_std.clamp(-4.0, 2.0)
        latent = mean + log_std.exp() * torch.randn_like(mean)
        scale = self.high - self.low  # reconstruct in range units so every action dimension counts alike
        recon = (((self.decode(state, latent) - action) / scale) ** 2).sum(-1).mean()
        kl = 0.5 * (mean**2 + (2 * log_std).exp() - 2 * log_std - 1).sum(-1).mean()
        return recon + kl_weight * kl


class Residual(nn.Module):
    """f(Δ | s, a) = f_a(f_h(s_h) ⊕ f_l(s_l), a), bounded to ±scale·range by tanh."""

    scale: torch.Tensor
    session_idx: torch.Tensor
    request_idx: torch.Tensor

    def __init__(self, layout: StateLayout | None, state_dim: int, action_dim: int, hidden: int, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.clone())
        if layout is None:  # BCQ-style: one network on the whole state
            self.register_buffer("session_idx", torch.arange(state_dim))
            self.register_buffer("request_idx", torch.zeros(0, dtype=torch.int64))
            self.f_h = mlp([state_dim, hidden])
            self.f_l = None
            z_dim = hidden
        else:
            self.register_buffer("session_idx", torch.tensor(layout.session))
            self.register_buffer("request_idx", torch.tensor(layout.request))
            self.f_h = mlp([len(layout.session), hidden])
            self.f_l = mlp([len(layout.request), hidden // 2])
            z_dim = hidden + hidden // 2
        self.f_a = mlp([z_dim + action_dim, hidden, action_dim])

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.f_h(state.index_select(-1, self.session_idx)))
        if self.f_l is not None:
            z = torch.cat([z, torch.relu(self.f_l(state.index_select(-1, self.request_idx)))], -1)
        return self.scale * torch.tanh(self.f_a(torch.cat([z, action], -1)))


class ResActPolicy(nn.Module):
    """π̂(s, c) = clip(D(s, c) + f(Δ | s, D(s, c))) and the argmax-Q1 selection over n latents."""

    def __init__(self, cvae: CVAE, residual: Residual, critic: TwinCritic, latent_clip: float | None = None) -> None:
        super().__init__()
        self.cvae, self.residual, self.critic = cvae, residual, critic
        self.latent_clip = latent_clip

    def improve(self, state: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """state [..., S], latent [..., L] → the improved action [..., A] (within the bounds)."""
        if self.latent_clip is not None:
            latent = latent.clamp(-self.latent_clip, self.latent_clip)
        reconstructed = self.cvae.decode(state, latent)
        improved = reconstructed + self.residual(state, reconstructed)
        return torch.minimum(torch.maximum(improved, self.cvae.low), self.cvae.high)

    def forward(self, state: torch.Tensor, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """state [B, S], latents [B, n, L] → (action [B, A], candidates [B, n, A], Q1 [B, n])."""
        # [B, n, S] by broadcasting against the draws, not expand(n): n stays dynamic in the exported graph.
        states = state.unsqueeze(1) + torch.zeros_like(latents[..., :1])
        candidates = self.improve(states, latents)
        q = self.critic.first(states, candidates)
        best = torch.argmax(q, dim=1, keepdim=True)  # [B, 1]
        # Select by a one-hot sum rather than gather + squeeze: exact (x·1 + 0s), and the exported graph keeps
        # static output widths. Draw numbers come from the data, so n stays dynamic.
        draw = torch.cumsum(torch.ones_like(q, dtype=torch.int64), dim=1) - 1
        one_hot = (draw == best).to(candidates.dtype).unsqueeze(-1)
        action = (candidates * one_hot).sum(dim=1)
        return action, candidates, q


@dataclass
class ResActTraining:
    critic_losses: list[float]
    reconstruction: list[float]  # L^Rec per update
    actor_q: list[float]


def make_resact(
    state_dim: int, low: torch.Tensor, high: torch.Tensor, layout: StateLayout, config: ResActConfig
) -> ResActPolicy:
    cvae = CVAE(state_dim, low, high, config.latent_dim, config.hidden)
    residual = Residual(
        None if config.bcq else layout, state_dim, low.numel(), config.hidden, config.residual_scale * (high - low)
    )
    critic = TwinCritic(state_dim, low.numel(), config.hidden)
    return ResActPolicy(cvae, residual, critic, latent_clip=0.5 if config.bcq else None)


def train_resact(policy: ResActPolicy, log: OfflineLog, config: ResActConfig, seed: int) -> ResActTraining:
    """Offline TD3 around the reconstructed online policy (seed 004's gradient flow)."""
    torch.manual_seed(seed)
    sampler = TransitionSampler(log, seed)
    target = copy.deepcopy(policy)
    for p in target.parameters():
        p.requires_grad_(False)
    cvae_opt = torch.optim.Adam(policy.cvae.parameters(), lr=config.lr)
    residual_opt = torch.optim.Adam(policy.residual.parameters(), lr=config.lr)
    critic_opt = torch.optim.Adam(policy.critic.parameters(), lr=config.lr)
    span = policy.cvae.high - policy.cvae.low
    out = ResActTraining([], [], [])
    for step in range(config.steps):
        mb = sampler.sample(config.batch)
        # L^Rec: θ_e, θ_d ← −∇L^Rec (and, below, θ_d ← +∇J unless BCQ-style).
        rec = policy.cvae.loss(mb.state, mb.action, config.kl_weight)
        cvae_opt.zero_grad()
        rec.backward()  # type: ignore[no-untyped-call]
        cvae_opt.step()

        # L^TD: y = r + γ·min(Q1', Q2')(s', π̂'(s')), π̂' with target smoothing noise (TD3).
        with torch.no_grad():
            next_action = _target_action(target, mb.next_state, config, span)
            q1, q2 = target.critic(mb.next_state, next_action)
            y = mb.reward + config.gamma * (1.0 - mb.done) * torch.minimum(q1, q2)
        loss = critic_loss(policy.critic, mb, y)
        critic_opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        critic_opt.step()
        out.critic_losses.append(float(loss.detach()))
        out.reconstruction.append(float(rec.detach()))

        if step % config.policy_delay == 0:
            # ∇θ_f J = E[∇_a Q1(s, a)|a=π̂(s,c) ∇θ_f f], and the same through D for θ_d (seed 004).
            latent = torch.randn(config.batch, policy.cvae.latent_dim)
            q = policy.critic.first(mb.state, policy.improve(mb.state, latent))
            # −Q scaled by its mean |Q| (as TD3+BC's λ) so that, on the decoder, ∇J and −∇L^Rec keep comparable
            # weights whatever the reward's units: the decoder stays a reconstruction of the online policy.
            actor_loss = -q.mean() / q.abs().mean().detach()
            residual_opt.zero_grad()
            cvae_opt.zero_grad()
            actor_loss.backward()  # type: ignore[no-untyped-call]
            residual_opt.step()
            if not config.bcq:
                cvae_opt.step()
            policy.critic.zero_grad()
            out.actor_q.append(float(q.mean().detach()))
            soft_update(target, policy, config.tau)
    return out


def _target_action(
    target: ResActPolicy, next_state: torch.Tensor, config: ResActConfig, span: torch.Tensor
) -> torch.Tensor:
    low, high = target.cvae.low, target.cvae.high
    if not config.bcq:
        latent = torch.randn(next_state.shape[0], target.cvae.latent_dim)
        action = target.improve(next_state, latent)
        noise = (torch.randn_like(action) * config.target_noise).clamp(
            -2 * config.target_noise, 2 * config.target_noise
        )
        return torch.minimum(torch.maximum(action + noise * span, low), high)
    # BCQ: n candidates at s', the one with the best λ·min + (1 − λ)·max of the twin targets.
    latents = torch.randn(next_state.shape[0], config.n_draws, target.cvae.latent_dim)
    states = next_state.unsqueeze(1).expand(-1, config.n_draws, -1)
    candidates = target.improve(states, latents)
    q1, q2 = target.critic(states, candidates)
    soft = config.bcq_lambda * torch.minimum(q1, q2) + (1 - config.bcq_lambda) * torch.maximum(q1, q2)
    best = soft.argmax(1)
    return candidates[torch.arange(next_state.shape[0]), best]


def reconstruction_error(policy: ResActPolicy, log: OfflineLog, seed: int, n: int = 1024) -> float:
    """Mean squared error (range units) of D(s, c) with c from the encoder's mean, on n logged decisions."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(log), size=min(n, len(log)), replace=False)
    state = torch.from_numpy(log.states[idx]).float()
    action = torch.from_numpy(log.actions[idx]).float()
    with torch.no_grad():
        mean, _ = policy.cvae.encoder(torch.cat([state, action], -1)).chunk(2, -1)
        scale = policy.cvae.high - policy.cvae.low
        return float((((policy.cvae.decode(state, mean) - action) / scale) ** 2).sum(-1).mean())
