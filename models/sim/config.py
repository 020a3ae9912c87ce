"""Configuration of the recommender simulator: the world's sizes, noise levels and business weights.

numpy-free and torch-free on purpose: the service's load test and the tests import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimConfig:
    """Sizes and noise levels of one simulated world; a seed turns it into a `Simulator`."""

    user_dim: int = 16
    context_dim: int = 4  # sin/cos of the hour of day, then a one-hot of the device
    item_dim: int = 32
    latent_dim: int = 8
    n_users: int = 10_000  # finite population so user ids are stable ("u0".."u9999")
    n_items: int = 5_000  # catalogue, ids "i0".."i4999"
    objectives: tuple[str, ...] = ("watch_time", "like", "follow", "share", "comment")
    # Dense objectives are positive reals (watch time in minutes, expectation in (0, max_watch_time));
    # every other objective is a sparse Bernoulli response with the base rate below.
    dense_objectives: tuple[str, ...] = ("watch_time",)
    base_rates: tuple[float, ...] = (0.0, 0.05, 0.01, 0.01, 0.02)  # per objective; ignored for dense ones
    max_watch_time: float = 3.0
    # Request reward r = Σ_items Σ_j business_weights[j] · y_j: the Kuaishou request-level reward
    # r_t = time + w_like·like + w_follow·follow + w_forward·forward + w_comment·comment (seed 001).
    # A sparse event is worth about 0.4 / base rate minutes of watch time, so each rare objective carries
    # a share of the reward comparable to watch time's and how the predictions are fused matters: with
    # these weights the best constant fusion action earns ~17% more than uniform weights (pools of 50).
    business_weights: tuple[float, ...] = (1.0, 8.0, 40.0, 40.0, 20.0)
    candidates_per_request: int = 1_000
    # Strength of the shared user·item affinity and of each objective's own affinity (logit scale).
    shared_affinity: float = 0.5
    objective_affinity: float = 2.0
    # Per-user and per-item objective propensities (logit scale): some users like, some follow.
    user_propensity: float = 0.8
    item_propensity: float = 0.8
    context_effect: float = 0.3
    # Observation noise on the features (the latent state is never shown to the policy).
    user_feature_noise: float = 0.3
    item_feature_noise: float = 0.3
    # Noise of the upstream MTL model's predictions (logit scale; log scale for dense objectives).
    prediction_noise: float = 0.3
    # Multiplicative noise of a sampled watch time: Gamma with mean 1 and this coefficient of variation.
    watch_time_cv: float = 0.5
    # Session features appended to the context the policy sees (seed 001: the state holds the user's
    # history). Empty by default: request-level worlds (the demo, the service tests) keep context_dim
    # columns. Allowed names: "depth" (requests so far / max depth) and "satisfaction" (sim/session.py).
    session_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.context_dim < 3:
            raise ValueError("context_dim must hold the hour (2 columns) and at least one device")
        if len(self.base_rates) != len(self.objectives) or len(self.business_weights) != len(self.objectives):
            raise ValueError("base_rates and business_weights need one entry per objective")
        if not set(self.dense_objectives) <= set(self.objectives):
            raise ValueError("dense_objectives must be objectives")
        for name, rate in zip(self.objectives, self.base_rates, strict=True):
            if name not in self.dense_objectives and not 0.0 < rate < 1.0:
                raise ValueError(f"base rate of sparse objective {name} must be in (0, 1)")
        if not set(self.session_features) <= {"depth", "satisfaction"}:
            raise ValueError("session_features may only hold 'depth' and 'satisfaction'")

    @property
    def n_objectives(self) -> int:
        return len(self.objectives)

    @property
    def dense_mask(self) -> tuple[bool, ...]:
        """True for each dense objective, in `objectives` order."""
        return tuple(name in self.dense_objectives for name in self.objectives)

    @property
    def user_columns(self) -> list[str]:
        return [f"user_{i}" for i in range(self.user_dim)]

    @property
    def observed_context_dim(self) -> int:
        """Context width the policy sees: the request context, then the session features."""
        return self.context_dim + len(self.session_features)

    @property
    def context_columns(self) -> list[str]:
        return [f"ctx_{i}" for i in range(self.context_dim)] + [f"session_{n}" for n in self.session_features]

    @property
    def item_columns(self) -> list[str]:
        return [f"item_{i}" for i in range(self.item_dim)]
