"""Simulator v2 sessions: satiation, a drift-diffusion patience, interest drift and the return model.

Per request t of user u (6 items by default, KuaiRand's list size), with SIMULATOR.md's sources:

    Sat_{u,k} ← λ_s^6·Sat_{u,k} + Σ_i λ_s^{5−i}·1[k ∈ τ_i]                   satiation (CIRS/DORL, Benson 2016)
    e_t  = mean_i (log(1 + T_i) − m_T) / s_T                                  standardised engagement
    v_t  = mean_i play_i·(q_i − ω_c·(c_i − c̄)) − v_ref                        quality − clickbait (RecSim LTS)
    B_{t+1} = B_t − ν_0 + κ_E·e_t + κ_q·v_t + e^{ζ_u}·(κ_I·n_int,t + κ_F·n_follow,t)
                  − κ_S·mean_i Sat_{u,τ_i} + σ_B·ξ_t,        leave when B ≤ 0   (Luo et al. IJCAI 2016)
    θ_u ← normalise(θ_u + α_θ·Σ_i play_i·q_i·(x_i − θ_u))                     interest drift (RecSim NG)

B_0 = 1; with κ = 0 the session length is inverse-Gaussian, IG(1/ν_0, 1/σ_B²) requests (KuaiRec plays
per user-day). At the session's end the user's next-day return probability is

    logit p_ret = logit p̄_u + λ_S·S̄ + λ_F·e^{ζ_u}·log(1 + F)                (Beta-geometric gaps)

with S̄ the session's mean v_t and F its follows; the return gap is Geometric(p_ret), truncated at 16 days.
The policy sees "depth" and "satisfaction" = σ(EMA of e_t): the engagement it could log, never B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.sim.session import SessionConfig, Sessions, SessionStep
from models.sim.simulator import FloatArray, IntArray, Requests, Responses, _sigmoid
from models.sim.world import SPARSE_V2, SimulatorV2

CLICKBAIT_MEAN = 2.0 / 7.0  # c̄ = mean of Beta(2, 5)


def quality_value(play: FloatArray, quality: FloatArray, clickbait: FloatArray, weight: float) -> FloatArray:
    """play·(q − ω_c·(c − c̄)) per exposure: what the user got out of it beyond the minutes (RecSim LTS)."""
    out: FloatArray = play * (quality - weight * (clickbait - CLICKBAIT_MEAN))
    return out


@dataclass(frozen=True)
class SessionStepV2(SessionStep):
    """v1's step plus what v2 adds: the draws and, for sessions that ended, their return probability."""

    draws: dict[str, FloatArray]  # play, watch (s), long_view, like, follow, share, comment: [B, K]
    return_probability: FloatArray  # [B]: p_ret where the session ended, NaN elsewhere


class SessionsV2(Sessions):
    """B concurrent v2 sessions with v1's interface (`requests()`, `step(requests, items)`)."""

    sim: SimulatorV2

    def __init__(
        self,
        sim: SimulatorV2,
        n: int,
        rng: np.random.Generator,
        config: SessionConfig | None = None,
        n_candidates: int = 200,
        refill: bool = True,
        users: IntArray | None = None,
    ) -> None:
        super().__init__(sim, n, rng, config or SessionConfig(max_depth=60), n_candidates, refill, users)
        self._start(np.ones(n, dtype=bool))

    def _start(self, rows: np.ndarray) -> None:
        """(Re)start the sessions at `rows` [B] bool for the users now in them."""
        n, n_tags = len(self), self.sim.world.n_tags
        if not hasattr(self, "patience"):
            self.patience = np.ones(n)
            self.satiation = np.zeros((n, n_tags))
            self.interest = np.zeros((n, n_tags))
            self.engagement = np.zeros(n)
            self.stock = np.zeros(n)
            self.follows = np.zeros(n)
        self.patience[rows] = 1.0
        self.satiation[rows] = 0.0
        self.interest[rows] = self.sim.interest_of(self.users[rows])
        self.engagement[rows] = 0.0
        self.stock[rows] = 0.0
        self.follows[rows] = 0.0
        self.satisfaction[rows] = 0.5
        self.depth[rows] = 0

    def session_features(self) -> FloatArray:
        columns = {"depth": self.depth / self.config.max_depth, "satisfaction": _sigmoid(self.engagement)}
        names = self.sim.config.session_features
        if not names:
            return np.zeros((len(self), 0), dtype=np.float32)
        return np.stack([columns[name] for name in names], axis=1).astype(np.float32)

    def step(self, requests: Requests, items: np.ndarray) -> SessionStepV2:
        sim, p, cfg = self.sim, self.sim.world.session, self.config
        users = requests.users
        e = sim.exposure(users, items, interest=self.interest, satiation=self.satiation)
        draws = sim.sample_from(users, e, self.rng)
        expected = sim.expected_from(users, e)
        sampled = np.stack([draws["watch"] / 60.0, *(draws[name] for name in SPARSE_V2)], axis=-1)
        tags = sim.item_tags[items] > 0  # [B, K, T]
        k = items.shape[1]
        # Leave pressure from the satiation the request met, then the satiation it leaves behind.
        pressure = np.einsum("bkt,bt->bk", tags, self.satiation).mean(1)
        decay = p.satiation_memory ** np.arange(k - 1, -1, -1, dtype=np.float64)
        self.satiation = p.satiation_memory**k * self.satiation + np.einsum("bkt,k->bt", tags, decay)
        engagement = ((np.log1p(draws["watch"]) - p.engagement_mean) / p.engagement_sd).mean(1)
        value = quality_value(draws["play"], e.quality, e.clickbait, p.clickbait_weight).mean(1) - p.quality_reference
        interactions = draws["like"].sum(1) + draws["share"].sum(1) + draws["comment"].sum(1)
        follows = draws["follow"].sum(1)
        social = np.exp(sim.social[users])
        self.patience = (
            self.patience
            - p.patience_drift
            + p.engagement * engagement
            + p.quality * value
            + social * (p.interaction * interactions + p.follow * follows)
            - p.satiation * pressure
            + p.patience_noise * self.rng.standard_normal(len(self))
        )
        # Interests drift towards good played items and away from bad ones.
        pull = (draws["play"] * e.quality)[..., None] * (sim.item_tags[items] - self.interest[:, None, :])
        self.interest = np.clip(self.interest + p.interest_drift * pull.sum(1), 1e-6, None)
        self.interest /= self.interest.sum(1, keepdims=True)
        self.depth = self.depth + 1
        self.stock += (value - self.stock) / self.depth
        self.follows += follows
        self.engagement = p.engagement_memory * self.engagement + (1 - p.engagement_memory) * engagement
        done = (self.patience <= 0.0) | (self.depth >= cfg.max_depth)
        logit = (
            np.log(sim.return_propensity[users] / (1 - sim.return_propensity[users]))
            + p.return_satisfaction * self.stock
            + p.return_follow * social * np.log1p(self.follows)
        )
        ret = np.where(done, _sigmoid(logit), np.nan)
        step = SessionStepV2(
            responses=Responses(sampled=sampled, expected=expected),
            objective_rewards=sampled.sum(axis=1) * self._weights,
            expected_objective_rewards=expected.sum(axis=1) * self._weights,
            done=done,
            depth=self.depth.copy(),
            draws=draws,
            return_probability=ret,
        )
        if self.refill:
            self.users[done] = sim.sample_users(int(done.sum()), self.rng)
            self._start(done)
        else:
            self.active &= ~done
        return step
