"""Simulator v2: a short-video world built from published user models and calibrated to KuaiRand.

Every equation and parameter is listed, with its source, in SIMULATOR.md; the numbers below are the
calibrated values (models/sim/calibration.py fits them and `cascade experiment calibrate` prints the
match). In short, per exposure of item i to user u (a hurdle, because KuaiRand's interactions are nested
inside engagement: P(like | long view) is 4× P(like | no long view)):

    A_ui   = log(K · mean_{k ∈ τ_i} θ'_uk)                          tag affinity, θ' = 0.9·θ_u + 0.1/K
    play   ~ Bern σ(b_play + b_g + β_A·A + β_c·c_i − β_S·Sat_u,τ_i + η_u^play)
    log R  ~ N(μ_R, σ_R²),  μ_R = ρ_0 − ρ_D·log(D_i/60) + ρ_A·A + ρ_q·q_i + ρ_c·c_i + η_u^wt
    T      = min(D_i·R, 5·D_i, 600 s) if play, else skip_fraction·min(D_i, 7 s)
    LV     = 1[T ≥ min(D_i, 18 s)]                                 KuaiRand's long_view
    y_k    ~ Bern σ(γ_0k + γ_LV,k·LV + γ_like,k·like + γ_A·A + γ_q·q_i − γ_c·c_i + b_g^int + η_u^k)

for k in (like, follow, share, comment), drawn in that order given play (follow also sees the like).
Watch time is reported in minutes. The session dynamics (satiation, patience, interest drift, return)
live in models/sim/world_session.py.

The class keeps v1's interface (`Simulator`): the trainers, CEM, the evaluation and the item table run
on either world. v1 stays the service's and the load test's request-level world (its widths are in the
bundle contracts and the tests); v2 is the session world every method is compared in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from models.sim.config import SimConfig
from models.sim.simulator import FloatArray, IntArray, Requests, Responses, Simulator, _sigmoid

if TYPE_CHECKING:  # world_session.py imports this module
    from models.sim.session import SessionConfig, Sessions

SEGMENTS = ("full_active", "high_active", "middle_active", "new", "low_active")
SPARSE_V2 = ("like", "follow", "share", "comment")
# Activity levels below full_active, per segment of SEGMENTS (new accounts have the least history).
HISTORY_LEVELS = (0, 1, 2, 4, 3)
# Follow-count buckets of KuaiRand-Pure users (user_features_pure.csv): midpoints and shares.
FOLLOW_BUCKETS = (0.0, 5.0, 30.0, 75.0, 125.0, 200.0, 375.0, 750.0)
FOLLOW_SHARES = (0.007, 0.064, 0.180, 0.147, 0.097, 0.128, 0.160, 0.218)


def v2_sim_config() -> SimConfig:
    """The v1 `SimConfig` fields v2 honours: widths, objectives, business weights, session features.

    Watch time is in minutes (the heads' scale is max_watch_time = 10 min, the 600 s cap). The business
    weights keep Kuaishou's r_t = time + Σ w_k·y_k (seed 001) with every sparse signal worth a few
    minutes, so interactions are ~15 % of the immediate reward (not its bulk, as in v1): their weight in
    the session return comes from their long-term effect, not from the reward's constants.
    """
    return SimConfig(
        user_dim=16,
        item_dim=12,
        n_users=10_000,
        n_items=5_000,
        base_rates=(0.0, 0.0185, 0.00107, 0.00096, 0.0025),
        max_watch_time=10.0,
        business_weights=(1.0, 2.0, 10.0, 10.0, 5.0),
        session_features=("depth", "satisfaction"),
    )


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of simulator v2. Calibrated ones say their target; the rest are stated defaults."""

    # ---- catalogue (KuaiRand-Pure video_features_basic_pure.csv)
    n_tags: int = 46
    tag_zipf: float = 0.85  # tag popularity ∝ rank^−s; s gives the top tag on ≈ 19 % of videos
    two_tag_share: float = 0.25  # 75 % of videos have one tag, 23 % two (rounded up)
    log_duration: tuple[float, float] = (4.23, 1.03)  # log D ~ N(4.23, 1.03²) s, clipped to [3, 600]
    quality_clickbait_corr: float = -0.3  # assumption of the anchors' sketch
    # ---- users (user_features_pure.csv)
    segment_shares: tuple[float, ...] = (0.658, 0.226, 0.078, 0.023, 0.015)
    # Play-rate offsets of the segments: logit of the random-exposure play rates 16.9/19.0/19.8/–/23.5 %.
    segment_play: tuple[float, ...] = (0.0, 0.143, 0.194, 0.194, 0.414)
    # Interaction offsets: log of the logging-policy interaction rates 1.74/2.69/3.44/–/4.43 % over full's.
    segment_interaction: tuple[float, ...] = (0.0, 0.436, 0.682, 0.682, 0.935)
    interest_concentration: float = 0.55  # Dirichlet α·K: median top-1 tag share ≈ 0.35 (calibrated)
    play_effect_sd: float = 0.5  # η^play (default)
    watch_effect_sd: float = 0.3  # η^wt (default)
    expressiveness_sd: float = 0.8  # one factor shared by the four interactions (default)
    interaction_effect_sd: float = 0.5  # each interaction's own effect (default)
    return_beta: tuple[float, float] = (1.89, 1.26)  # daily return propensity p̄_u ~ Beta (gap fit)
    new_user_feature_noise: float = 3.0  # cold start: a new user's interest features are 3× noisier
    feature_noise: float = 0.3
    # ---- immediate response (calibrated to KuaiRand rates, see calibration.py)
    b_play: float = -1.7795  # random-exposure valid play 17.6 %
    beta_affinity: float = 1.1797  # logging-like valid play 45.1 %
    beta_clickbait: float = 1.0  # default: clickbait raises the play probability
    beta_satiation: float = 0.3  # default (CIRS/DORL-style boredom)
    rho_0: float = -1.7284  # long view | play, random 48.1 %
    rho_duration: float = 0.60  # complete | play by duration bucket (least squares on logs)
    rho_affinity: float = 0.7814  # long view | play, logging-like 70.3 %
    rho_quality: float = 0.2  # default
    rho_clickbait: float = 0.3  # default: clickbait lengthens immediate watching (RecSim NG)
    sigma_r: float = 0.9  # KuaiRec watch-ratio spread
    skip_fraction: float = 0.3  # share of min(D, 7 s) watched on a skip (default)
    # like, follow, share, comment
    gamma_0: tuple[float, float, float, float] = (-5.1881, -8.1100, -7.7299, -6.9767)  # the four rates
    # like: lift 4 given long view; follow, share: default; comment: P(LV | comment) = 0.88
    gamma_lv: tuple[float, float, float, float] = (1.2137, 0.6, 0.6, 0.8351)
    gamma_like_follow: float = 1.9316  # follow logit given a like: P(follow | like) = 2.5 %
    gamma_affinity: float = 0.5  # default
    gamma_quality: float = 0.5  # default: interactions signal quality (the satisfaction channel)
    gamma_clickbait: float = 1.0  # default: clickbait is watched, rarely liked
    # ---- the upstream MTL model (what the agent sees)
    prediction_noise: float = 0.3  # logit (sparse) / log (watch) noise of the ranking model's estimate
    # A sparse head learns a user's taste from that user's few logged events, so its error grows as the
    # history shrinks: sd = σ_0·d^{level_g/2} (a standard error ∝ 1/√history, the history shrinking by d
    # per activity level below full_active). d = 1 in v2 (every user's predictions equally good), 4 in v2.1
    # (unanchored; SIMULATOR.md gives the no-learning probe at d = 1, 2, 4 it was chosen from).
    history_decay: float = 1.0
    # ---- the stage heads' training targets (SIMULATOR.md "v2.2")
    # Each stage's model is fitted to targets with its own systematic error: logit (sparse) / log (watch)
    # shifted by σ_s·z_s(i), z_s a fixed standardised linear function of the item's features per (stage,
    # objective). σ_s for (matching, pre-ranking, ranking): 0 in v2 and v2.1 (every stage's heads learn the
    # same truth), (0.8, 0.8, 0.3) in v2.2 (the anchors' σ_pre ≈ 0.8, σ_rank ≈ 0.3, an assumption).
    stage_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    # Logging-like policy used for calibration: top-6 of 500 random candidates by A + N(0, 1).
    logging_candidates: int = 500
    logging_noise: float = 1.0
    # ---- session dynamics: see world_session.py
    session: PatienceConfig = field(default_factory=lambda: PatienceConfig())

    @property
    def n_segments(self) -> int:
        return len(self.segment_shares)


@dataclass(frozen=True)
class PatienceConfig:
    """Leave and return model (world_session.py). ν_0 and σ_B give IG session lengths; κ's are swept."""

    patience_drift: float = 0.0734  # ν_0: mean session 66.5 items (11.1 requests) under logging-like
    patience_noise: float = 0.346  # σ_B = √(6/50): IG shape 50 items → 8.3 requests
    engagement: float = 0.1813  # κ_E: random-policy sessions 35 % shorter (anchors' 20–50 % range)
    quality: float = 0.05  # κ_q, unanchored: RecSim's satisfaction from quality minus clickbait
    interaction: float = 0.05  # κ_I per like/comment/share, × exp(ζ_u) (social users value them more)
    follow: float = 0.2  # κ_F per follow, × exp(ζ_u): a follow keeps the user ≈ 2 requests longer
    satiation: float = 0.05  # κ_S: repeated tags push the user out
    satiation_memory: float = 0.8  # λ_s per item (half-life ≈ 3 items)
    interest_drift: float = 0.03  # α_θ per played item (RecSim NG form)
    engagement_memory: float = 0.7  # the observable 'satisfaction' session feature: EMA of engagement
    return_satisfaction: float = 0.5  # λ_S on the session's satisfaction stock (return model)
    return_follow: float = 0.3  # λ_F on log(1 + follows this session), × exp(ζ_u)
    clickbait_weight: float = 2.0  # ω_c: clickbait's cost to satisfaction (default)
    # Standardisation under the logging-like policy (calibration.session_constants): engagement e_t and
    # the quality value v_t are centred there, so a logging-like session has zero mean drift from them.
    engagement_mean: float = 2.0724  # m_T: mean log(1 + T / s) per exposure
    engagement_sd: float = 1.3531  # s_T
    quality_reference: float = -0.0132  # v_ref: mean play·(q − ω_c·(c − c̄)) per exposure


def _normal_cdf(x: FloatArray) -> FloatArray:
    """Φ(x) by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf and the world stays numpy-only."""
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    out: FloatArray = 0.5 * (1.0 + np.sign(x) * erf)
    return out


@dataclass(frozen=True)
class ExposureState:
    """Per-exposure quantities of users [B] × items [B, K] under a session state (satiation)."""

    affinity: FloatArray  # [B, K]
    p_play: FloatArray
    mu_r: FloatArray
    duration: FloatArray  # seconds
    quality: FloatArray
    clickbait: FloatArray


class SimulatorV2(Simulator):
    """Simulator v2 (SIMULATOR.md) behind v1's interface. `world` holds the v2 parameters."""

    def __init__(self, config: SimConfig | None = None, seed: int = 0, world: WorldConfig | None = None) -> None:
        self.config = cfg = config or v2_sim_config()
        self.world = w = world or WorldConfig()
        self.seed = seed
        rng = np.random.default_rng([seed, 20])
        self.rng = np.random.default_rng([seed, 21])
        K = w.n_tags
        # Catalogue.
        popularity = np.arange(1, K + 1, dtype=np.float64) ** -w.tag_zipf
        self.tag_popularity = popularity / popularity.sum()
        n_items = cfg.n_items
        first = rng.choice(K, size=n_items, p=self.tag_popularity)
        second = rng.choice(K, size=n_items, p=self.tag_popularity)
        two = (rng.random(n_items) < w.two_tag_share) & (second != first)
        self.item_tags = np.zeros((n_items, K))
        self.item_tags[np.arange(n_items), first] = 1.0
        self.item_tags[np.flatnonzero(two), second[two]] = 1.0
        self.item_tags /= self.item_tags.sum(1, keepdims=True)  # mean over the item's tags
        self.duration = np.clip(np.exp(rng.normal(*w.log_duration, n_items)), 3.0, 600.0)
        z1, z2 = rng.standard_normal(n_items), rng.standard_normal(n_items)
        rho = w.quality_clickbait_corr
        self.quality = z1
        # Clickbait ~ Beta(2, 5) through a Gaussian copula correlated with quality.
        u = _normal_cdf(rho * z1 + np.sqrt(1 - rho**2) * z2)
        self.clickbait = np.quantile(rng.beta(2.0, 5.0, 100_000), u)
        # Users.
        n_users = cfg.n_users
        shares = np.asarray(w.segment_shares) / np.sum(w.segment_shares)
        self.segment = rng.choice(len(shares), size=n_users, p=shares)
        self.interest = rng.dirichlet(np.full(K, w.interest_concentration), size=n_users)
        follow_counts = rng.choice(
            np.asarray(FOLLOW_BUCKETS), size=n_users, p=np.asarray(FOLLOW_SHARES) / sum(FOLLOW_SHARES)
        )
        social = np.log1p(follow_counts)
        self.social = (social - social.mean()) / social.std()  # ζ_u
        self.return_propensity = rng.beta(*w.return_beta, size=n_users)
        levels = np.asarray(HISTORY_LEVELS, dtype=np.float64)[self.segment]
        self.sparse_prediction_noise = w.prediction_noise * w.history_decay ** (levels / 2)
        self.play_effect = w.play_effect_sd * rng.standard_normal(n_users)
        self.watch_effect = w.watch_effect_sd * rng.standard_normal(n_users)
        factor = rng.standard_normal((n_users, 1))
        self.interaction_effect = (
            w.expressiveness_sd * factor
            + w.interaction_effect_sd * rng.standard_normal((n_users, 4))
            + np.asarray(w.segment_interaction)[self.segment][:, None]
        )
        # Observed features. A tag embedding (K → 9) carries interests and item topics into a few columns.
        embed = rng.standard_normal((K, 9)) / np.sqrt(9)
        noise = np.where(self.segment == SEGMENTS.index("new"), w.new_user_feature_noise, 1.0)[:, None]
        interest_obs = (self.interest * K) @ embed / np.sqrt(K) + w.feature_noise * noise * rng.standard_normal(
            (n_users, 9)
        )
        self.user_features = np.concatenate(
            [
                np.eye(len(shares))[self.segment],
                (self.social + w.feature_noise * rng.standard_normal(n_users))[:, None],
                (np.log(self.return_propensity / (1 - self.return_propensity)))[:, None],
                interest_obs,
            ],
            axis=1,
        ).astype(np.float32)
        log_d = (np.log(self.duration) - w.log_duration[0]) / w.log_duration[1]
        self.item_features = np.concatenate(
            [
                (self.item_tags * K) @ embed / np.sqrt(K),
                log_d[:, None],
                (self.quality + w.feature_noise * rng.standard_normal(n_items))[:, None],
                (4.0 * (self.clickbait - 0.286) + w.feature_noise * rng.standard_normal(n_items))[:, None],
            ],
            axis=1,
        ).astype(np.float32)
        if self.user_features.shape[1] != cfg.user_dim or self.item_features.shape[1] != cfg.item_dim:
            raise ValueError("SimulatorV2 needs SimConfig(user_dim=16, item_dim=12): use v2_sim_config()")
        # Drawn on a stream of its own, after everything else: v2 and v2.1 worlds are unchanged draw for draw.
        self.stage_bias = _stage_bias(self.item_features, w.stage_bias, len(cfg.objectives), seed)
        self._dense = np.array(cfg.dense_mask)
        self._weights = np.array(cfg.business_weights, dtype=np.float64)
        if tuple(cfg.objectives) != ("watch_time", *SPARSE_V2):
            raise ValueError("SimulatorV2 models watch_time, like, follow, share, comment in that order")

    # ------------------------------------------------------------------------------ exposures

    def interest_of(self, users: IntArray) -> FloatArray:
        """θ_u [B, K] at the start of a session (sessions drift their own copy)."""
        out: FloatArray = self.interest[users]
        return out

    def exposure(
        self, users: IntArray, items: IntArray, interest: FloatArray | None = None, satiation: FloatArray | None = None
    ) -> ExposureState:
        """Affinity, play probability and watch-ratio location for users [B] × items [B, K]."""
        w = self.world
        theta = self.interest[users] if interest is None else interest
        smoothed = 0.9 * theta + 0.1 / w.n_tags
        tags = self.item_tags[items]  # [B, K, T]
        affinity = np.log(w.n_tags * np.einsum("bkt,bt->bk", tags, smoothed))
        sat = np.zeros_like(affinity) if satiation is None else np.einsum("bkt,bt->bk", tags > 0, satiation)
        quality, clickbait, duration = self.quality[items], self.clickbait[items], self.duration[items]
        segment = self.segment[users]
        p_play = _sigmoid(
            w.b_play
            + np.asarray(w.segment_play)[segment][:, None]
            + w.beta_affinity * affinity
            + w.beta_clickbait * clickbait
            - w.beta_satiation * sat
            + self.play_effect[users][:, None]
        )
        mu_r = (
            w.rho_0
            - w.rho_duration * np.log(duration / 60.0)
            + w.rho_affinity * affinity
            + w.rho_quality * quality
            + w.rho_clickbait * clickbait
            + self.watch_effect[users][:, None]
        )
        return ExposureState(affinity, p_play, mu_r, duration, quality, clickbait)

    def _interaction_logit(
        self, users: IntArray, e: ExposureState, k: int, lv: float | FloatArray, like: float | FloatArray
    ) -> FloatArray:
        w = self.world
        logit: FloatArray = (
            w.gamma_0[k]
            + w.gamma_lv[k] * lv
            + (w.gamma_like_follow * like if k == 1 else 0.0)
            + w.gamma_affinity * e.affinity
            + w.gamma_quality * e.quality
            - w.gamma_clickbait * e.clickbait
            + self.interaction_effect[users, k][:, None]
        )
        return logit

    def long_view_given_play(self, e: ExposureState) -> FloatArray:
        threshold = np.minimum(1.0, 18.0 / e.duration)  # long view: T ≥ min(D, 18 s)
        out: FloatArray = 1.0 - _normal_cdf((np.log(threshold) - e.mu_r) / self.world.sigma_r)
        return out

    def expected_from(self, users: IntArray, e: ExposureState) -> FloatArray:
        """E[y] [B, K, 5] in closed form: watch minutes, then the four interaction probabilities."""
        w, s = self.world, self.world.sigma_r
        cap = np.minimum(5.0, 600.0 / e.duration)  # R ≤ cap
        log_cap = np.log(cap)
        # E[min(R, m)] of a log-normal: e^{μ+σ²/2}·Φ((ln m − μ − σ²)/σ) + m·(1 − Φ((ln m − μ)/σ)).
        mean_r = np.exp(e.mu_r + 0.5 * s * s) * _normal_cdf((log_cap - e.mu_r - s * s) / s) + cap * (
            1.0 - _normal_cdf((log_cap - e.mu_r) / s)
        )
        skip = w.skip_fraction * np.minimum(e.duration, 7.0)
        watch = (e.p_play * e.duration * mean_r + (1.0 - e.p_play) * skip) / 60.0
        p_lv = self.long_view_given_play(e)
        out = np.zeros((*e.p_play.shape, 5))
        out[..., 0] = watch
        like = {lv: _sigmoid(self._interaction_logit(users, e, 0, lv, 0.0)) for lv in (0.0, 1.0)}
        for k in range(4):
            total = np.zeros_like(e.p_play)
            for lv, p in ((1.0, p_lv), (0.0, 1.0 - p_lv)):
                if k == 1:  # follow also depends on the like
                    f1 = _sigmoid(self._interaction_logit(users, e, 1, lv, 1.0))
                    f0 = _sigmoid(self._interaction_logit(users, e, 1, lv, 0.0))
                    total += p * (like[lv] * f1 + (1.0 - like[lv]) * f0)
                else:
                    total += p * _sigmoid(self._interaction_logit(users, e, k, lv, 0.0))
            out[..., 1 + k] = e.p_play * total
        return out

    def sample_from(self, users: IntArray, e: ExposureState, rng: np.random.Generator) -> dict[str, FloatArray]:
        """One draw of the hurdle: play, watch seconds, long view and the interactions, [B, K] each."""
        w = self.world
        play = rng.random(e.p_play.shape) < e.p_play
        ratio = np.exp(e.mu_r + w.sigma_r * rng.standard_normal(e.p_play.shape))
        watch = np.where(
            play,
            np.minimum(e.duration * np.minimum(ratio, 5.0), 600.0),
            w.skip_fraction * np.minimum(e.duration, 7.0),
        )
        lv = (play & (watch >= np.minimum(e.duration, 18.0))).astype(np.float64)
        out = {"play": play.astype(np.float64), "watch": watch, "long_view": lv}
        like = play & (rng.random(lv.shape) < _sigmoid(self._interaction_logit(users, e, 0, lv, 0.0)))
        out["like"] = like.astype(np.float64)
        for k, name in ((1, "follow"), (2, "share"), (3, "comment")):
            logit = self._interaction_logit(users, e, k, lv, out["like"])
            out[name] = (play & (rng.random(lv.shape) < _sigmoid(logit))).astype(np.float64)
        return out

    # ---------------------------------------------------------------- v1 interface (no session state)

    def expected_responses(self, users: IntArray, items: IntArray, context: FloatArray) -> FloatArray:
        """E[y | u, i] [B, K, 5] at a session's start (no satiation, interests as sampled)."""
        return self.expected_from(users, self.exposure(users, items))

    def respond(
        self, users: IntArray, items: IntArray, context: FloatArray, rng: np.random.Generator | None = None
    ) -> Responses:
        e = self.exposure(users, items)
        return self.responses_from(users, e, rng or self.rng)

    def responses_from(self, users: IntArray, e: ExposureState, rng: np.random.Generator) -> Responses:
        draw = self.sample_from(users, e, rng)
        sampled = np.stack([draw["watch"] / 60.0, *(draw[name] for name in SPARSE_V2)], axis=-1)
        return Responses(sampled=sampled, expected=self.expected_from(users, e))

    def predictions(
        self, users: IntArray, items: IntArray, context: FloatArray, rng: np.random.Generator | None = None
    ) -> FloatArray:
        """The ranking model's estimate: E[y] from the user's profile (it does not see the session's
        satiation or drifted interests) with log-normal (watch) / logit-normal (sparse) noise."""
        rng = rng or self.rng
        expected = self.expected_responses(users, items, context)
        noise = rng.standard_normal(expected.shape)
        sparse_noise = self.sparse_prediction_noise[users][:, None, None] * noise[..., 1:]
        watch_noise = self.world.prediction_noise * noise[..., :1]  # watch is logged on every exposure
        return self._shifted(expected, watch_noise, sparse_noise).astype(np.float32)

    def stage_targets(self, stage: int, items: IntArray, expected: FloatArray) -> FloatArray:
        """What stage `stage`'s heads are fitted to for `expected` = E[y | u, items] [B, M, 5]: the truth with
        the stage's systematic error, σ(logit p_k + e_sk(i)) for the sparse responses, E[T]·exp(e_sw(i))
        for watch (capped at the heads' range); the truth itself where the world has no stage bias."""
        if not np.any(self.world.stage_bias[stage]):
            return expected
        error = self.stage_bias[stage][items]  # [B, M, 5]
        return self._shifted(expected, error[..., :1], error[..., 1:])

    def _shifted(self, expected: FloatArray, watch_shift: FloatArray, sparse_shift: FloatArray) -> FloatArray:
        """`expected` [B, M, 5] with log(watch) moved by `watch_shift` (capped at the heads' range) and the
        sparse responses' logits by `sparse_shift`: how every estimate of the truth here errs."""
        p = np.clip(expected[..., 1:], 1e-7, 1 - 1e-7)
        sparse = _sigmoid(np.log(p / (1 - p)) + sparse_shift)
        watch = np.minimum(expected[..., :1] * np.exp(watch_shift), self.config.max_watch_time)
        return np.concatenate([watch, sparse], axis=-1)

    def sample_requests(
        self, n_requests: int, n_candidates: int | None = None, rng: np.random.Generator | None = None
    ) -> Requests:
        return super().sample_requests(n_requests, n_candidates or 200, rng)

    def sessions(
        self,
        n: int,
        rng: np.random.Generator,
        config: SessionConfig | None = None,
        n_candidates: int = 200,
        refill: bool = True,
        users: IntArray | None = None,
    ) -> Sessions:
        from models.sim.world_session import SessionsV2

        return SessionsV2(self, n, rng, config, n_candidates, refill, users)


def _stage_bias(item_features: FloatArray, sd: tuple[float, float, float], objectives: int, seed: int) -> FloatArray:
    """e_s(i) = σ_s·z_s(i) [3, items, objectives]: z_s = X·β_s standardised over the catalogue, β_s ~ N(0, I)
    per (stage, objective), so each stage errs by a fixed amount on each item that its heads can learn
    from the item's features (a systematic bias, not noise that more training would average out)."""
    directions = np.random.default_rng([seed, 22]).standard_normal((3, item_features.shape[1], objectives))
    z = item_features.astype(np.float64) @ directions  # [3, items, objectives]
    z = (z - z.mean(axis=1, keepdims=True)) / z.std(axis=1, keepdims=True)
    bias: FloatArray = np.asarray(sd, dtype=np.float64)[:, None, None] * z
    return bias


WorldName = Literal["v1", "v2", "v2.1", "v2.2"]
V2_WORLDS = ("v2", "v2.1", "v2.2")


def world_config(name: str) -> WorldConfig:
    """The committed parameters of a v2 world: v2, v2.1 (v2 whose sparse predictions get worse as a user's
    history shrinks, SIMULATOR.md "v2.1": d = 4) or v2.2 (v2.1 whose stage heads learn biased targets)."""
    if name == "v2":
        return WorldConfig()
    if name == "v2.1":
        return WorldConfig(history_decay=4.0)
    if name == "v2.2":
        return WorldConfig(history_decay=4.0, stage_bias=(0.8, 0.8, 0.3))
    raise ValueError(f"unknown v2 world {name!r}; known: {', '.join(V2_WORLDS)}")


def simulator_in(world: WorldName, config: SimConfig, seed: int) -> Simulator:
    """World `seed` of simulator v1, v2, v2.1 or v2.2 (at their committed parameters) with `config`'s widths."""
    if world in V2_WORLDS:
        return SimulatorV2(config, seed=seed, world=world_config(world))
    return Simulator(config, seed=seed)


def trained_world(training: Mapping[str, Any]) -> tuple[Simulator, SimConfig]:
    """The world a bundle was trained in, from its manifest's `training` (`world`, `seed`, `simulator`), and
    that world's config: what the evaluation, the load test and the example requests draw users from."""
    recorded = training.get("simulator")
    if not isinstance(recorded, Mapping) or "seed" not in training:
        raise ValueError("the manifest does not say which simulated world the bundle was trained in")
    known = {f.name for f in fields(SimConfig)}
    arguments: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in known}
    config = SimConfig(**arguments)
    name = str(training.get("world", "v1"))  # bundles before v2 name no world: v1's
    if name not in ("v1", *V2_WORLDS):
        raise ValueError(f"the manifest names an unknown simulated world {name!r}")
    return simulator_in(cast(WorldName, name), config, int(str(training["seed"]))), config
