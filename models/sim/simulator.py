"""A seeded, numpy-only multi-task recommender world: users, items, contexts and their responses.

Each user u has latent interests z_u and shows only noisy features x_u = z_u·W_u + ε; items likewise
(x_i = z_i·W_i + ε). The response of u to item i in context c on objective j has the logit

    ℓ_j(u, i, c) = β_j + α_s·(z_u·z_i)/√L + α_o·(z_uᵀ M_j z_i) + π_j(u) + ρ_j(i) + c·C_j

(a shared affinity, an objective's own affinity, user and item propensities, a context effect). Dense
objectives (watch time) have expectation max_watch_time·σ(ℓ_j); sparse ones are Bernoulli(σ(ℓ_j)). The
offsets β_j are solved at construction so the population means hit the configured base rates.

Because every objective has its own affinity matrix M_j, the item that maximises watch time is often
not the one most likely to be followed: how to fuse the predictions changes the request reward, which
is what the fusion actor learns. The upstream MTL model is simulated by `predictions`, a noisy estimate
of the expected responses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.sim.config import SimConfig

if TYPE_CHECKING:  # session.py imports this module
    from models.sim.session import SessionConfig, Sessions

FloatArray = np.ndarray
IntArray = np.ndarray


@dataclass(frozen=True)
class Requests:
    """A batch of B requests, each with its own candidate pool of N catalogue items."""

    users: IntArray  # [B] user indices into the population
    user_features: FloatArray  # [B, user_dim] float32
    context: FloatArray  # [B, context_dim] float32
    candidates: IntArray  # [B, N] item indices, unique within a row

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Responses:
    """What users did with the items they were served, and what they were expected to do."""

    sampled: FloatArray  # [B, K, objectives] float64: watch minutes, 0/1 for sparse objectives
    expected: FloatArray  # [B, K, objectives] float64: E[y | u, i, c]


def _sigmoid(x: FloatArray) -> FloatArray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # tanh form: no overflow warning for large |x|


class Simulator:
    """One seeded world: its parameters come from `seed`, per-call randomness from `rng` (or its own)."""

    def __init__(self, config: SimConfig | None = None, seed: int = 0) -> None:
        self.config = cfg = config or SimConfig()
        self.seed = seed
        world = np.random.default_rng(seed)
        self.rng = np.random.default_rng([seed, 1])  # default per-call randomness, apart from the world's
        L, J = cfg.latent_dim, cfg.n_objectives

        self.user_latent = world.standard_normal((cfg.n_users, L))
        self.item_latent = world.standard_normal((cfg.n_items, L))
        user_map = world.standard_normal((L, cfg.user_dim)) / np.sqrt(L)
        item_map = world.standard_normal((L, cfg.item_dim)) / np.sqrt(L)
        self.user_features = (
            self.user_latent @ user_map + cfg.user_feature_noise * world.standard_normal((cfg.n_users, cfg.user_dim))
        ).astype(np.float32)
        self.item_features = (
            self.item_latent @ item_map + cfg.item_feature_noise * world.standard_normal((cfg.n_items, cfg.item_dim))
        ).astype(np.float32)

        # Entries N(0, 1/L²) give z_uᵀ M_j z_i unit variance for standard-normal latents.
        self._objective_maps = world.standard_normal((J, L, L)) / L
        # Propensities: mostly explained by the latent (so features carry them), partly idiosyncratic.
        self._user_propensity = cfg.user_propensity * (
            0.8 * self.user_latent @ world.standard_normal((L, J)) / np.sqrt(L)
            + 0.6 * world.standard_normal((cfg.n_users, J))
        )
        self._item_propensity = cfg.item_propensity * (
            0.8 * self.item_latent @ world.standard_normal((L, J)) / np.sqrt(L)
            + 0.6 * world.standard_normal((cfg.n_items, J))
        )
        self._context_effect = cfg.context_effect * world.standard_normal((cfg.context_dim, J))
        self._dense = np.array(cfg.dense_mask)
        self._weights = np.array(cfg.business_weights, dtype=np.float64)
        self._offsets = np.zeros(J)
        self._offsets = self._calibrate_offsets(world)

    # ----------------------------------------------------------------------------------- requests

    def sample_users(self, n: int, rng: np.random.Generator | None = None) -> IntArray:
        """Indices of n users drawn uniformly from the population (with replacement)."""
        return (rng or self.rng).integers(0, self.config.n_users, size=n)

    def sample_contexts(self, n: int, rng: np.random.Generator | None = None) -> FloatArray:
        """n context vectors: [sin(hour), cos(hour), one-hot device]; float32."""
        rng = rng or self.rng
        n_devices = self.config.context_dim - 2
        hour = rng.uniform(0.0, 24.0, size=n)
        context = np.zeros((n, self.config.context_dim), dtype=np.float32)
        context[:, 0] = np.sin(2 * np.pi * hour / 24)
        context[:, 1] = np.cos(2 * np.pi * hour / 24)
        context[np.arange(n), 2 + rng.integers(0, n_devices, size=n)] = 1.0
        return context

    def candidate_pools(self, n_requests: int, n_candidates: int, rng: np.random.Generator | None = None) -> IntArray:
        """[B, N] item indices, each row N distinct catalogue items."""
        if not 0 < n_candidates <= self.config.n_items:
            raise ValueError(f"n_candidates must be in 1..{self.config.n_items}, got {n_candidates}")
        keys = (rng or self.rng).random((n_requests, self.config.n_items))
        return np.argpartition(keys, n_candidates - 1, axis=1)[:, :n_candidates].astype(np.int64)

    def sample_requests(
        self, n_requests: int, n_candidates: int | None = None, rng: np.random.Generator | None = None
    ) -> Requests:
        """B requests of random users in random contexts, each with a fresh candidate pool."""
        rng = rng or self.rng
        users = self.sample_users(n_requests, rng)
        return Requests(
            users=users,
            user_features=self.user_features[users],
            context=self.sample_contexts(n_requests, rng),
            candidates=self.candidate_pools(n_requests, n_candidates or self.config.candidates_per_request, rng),
        )

    def sessions(
        self,
        n: int,
        rng: np.random.Generator,
        config: SessionConfig | None = None,
        n_candidates: int = 200,
        refill: bool = True,
        users: IntArray | None = None,
    ) -> Sessions:
        """B concurrent sessions of this world (v2 overrides this with its own session dynamics)."""
        from models.sim.session import Sessions

        return Sessions(self, n, rng, config, n_candidates, refill, users)

    # ---------------------------------------------------------------------------------- responses

    def expected_responses(self, users: IntArray, items: IntArray, context: FloatArray) -> FloatArray:
        """E[y_j | u, i, c], [B, K, objectives]: watch minutes for dense objectives, else probabilities."""
        logits = self._logits(users, items, context)
        expected = _sigmoid(logits)
        return np.where(self._dense, self.config.max_watch_time * expected, expected)

    def stage_targets(self, stage: int, items: IntArray, expected: FloatArray) -> FloatArray:
        """What stage `stage`'s heads are fitted to, given `expected` = E[y | u, items]: the truth here (v1's
        stages have no bias of their own; SimulatorV2 adds one in v2.2)."""
        return expected

    def predictions(
        self, users: IntArray, items: IntArray, context: FloatArray, rng: np.random.Generator | None = None
    ) -> FloatArray:
        """The upstream MTL model's estimate of `expected_responses`: noisy, positive, float32."""
        rng = rng or self.rng
        noise = self.config.prediction_noise * rng.standard_normal((*items.shape, self.config.n_objectives))
        noisy = _sigmoid(self._logits(users, items, context) + noise)
        return np.where(self._dense, self.config.max_watch_time * noisy, noisy).astype(np.float32)

    def respond(
        self, users: IntArray, items: IntArray, context: FloatArray, rng: np.random.Generator | None = None
    ) -> Responses:
        """Sample each user's responses to the items served ([B, K]) together with their expectations."""
        rng = rng or self.rng
        expected = self.expected_responses(users, items, context)
        cv = self.config.watch_time_cv
        shape = 1.0 / cv**2  # Gamma(shape, 1/shape) has mean 1 and coefficient of variation cv
        watch = expected * rng.gamma(shape, 1.0 / shape, size=expected.shape)
        clicks = (rng.random(expected.shape) < expected).astype(np.float64)
        return Responses(sampled=np.where(self._dense, watch, clicks), expected=expected)

    def reward(self, responses: FloatArray) -> FloatArray:
        """Request reward Σ_items Σ_j weight_j·y_j for responses [B, K, objectives] → [B] (seed 001 r_t)."""
        reward: FloatArray = np.asarray(responses @ self._weights).sum(axis=-1)
        return reward

    @property
    def business_weights(self) -> dict[str, float]:
        return dict(zip(self.config.objectives, self.config.business_weights, strict=True))

    # -------------------------------------------------------------------------------------- ids

    @staticmethod
    def user_id(index: int) -> str:
        return f"u{index}"

    @staticmethod
    def item_ids(indices: IntArray) -> list[str]:
        return [f"i{int(i)}" for i in indices]

    # -------------------------------------------------------------------------------- internals

    def _logits(self, users: IntArray, items: IntArray, context: FloatArray) -> FloatArray:
        """ℓ [B, K, objectives] for users [B], items [B, K], context [B, C] (module docstring)."""
        cfg = self.config
        zu = self.user_latent[users]  # [B, L]
        zi = self.item_latent[items]  # [B, K, L]
        shared = (zi @ zu[:, :, None])[..., 0] / np.sqrt(cfg.latent_dim)  # z_u·z_i, [B, K]
        own = zi @ np.einsum("bl,jlm->bmj", zu, self._objective_maps)  # z_uᵀ M_j z_i, [B, K, J]
        logits: FloatArray = (
            self._offsets
            + cfg.shared_affinity * shared[..., None]
            + cfg.objective_affinity * own
            + self._user_propensity[users][:, None, :]
            + self._item_propensity[items]
            + (np.asarray(context, dtype=np.float64) @ self._context_effect)[:, None, :]
        )
        return logits

    def _calibrate_offsets(self, world: np.random.Generator, n: int = 20_000) -> FloatArray:
        """Offsets β_j so that the population mean of σ(ℓ_j) equals each sparse objective's base rate.

        The logits have a spread of about 2 on the logit scale, so logit(base rate) alone would give
        rates several times too high (Jensen). Bisection on a fixed sample of (user, item, context).
        Dense objectives keep offset 0: a median watch time of max_watch_time / 2.
        """
        users = world.integers(0, self.config.n_users, size=n)
        items = world.integers(0, self.config.n_items, size=(n, 1))
        context = self.sample_contexts(n, world)
        base = self._logits(users, items, context)[:, 0, :]  # offsets are still zero here
        offsets = np.zeros(self.config.n_objectives)
        for j, rate in enumerate(self.config.base_rates):
            if self._dense[j]:
                continue
            lo, hi = -20.0, 20.0
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if _sigmoid(base[:, j] + mid).mean() < rate else (lo, mid)
            offsets[j] = 0.5 * (lo + hi)
        return offsets
