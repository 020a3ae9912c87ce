"""Off-policy value estimators over logged decisions: IPS, SNIPS, NCIS (seed 004) and doubly robust.

Every estimator takes the same arrays (one row per logged decision), so the trainer can call any of
them as a gate on a candidate version before it serves anyone:

    rewards             r_i, the reward the logged action earned
    behaviour_log_prob  log π_b(a_i | s_i), the logged propensity (DecisionRecord.log_prob)
    target_log_prob     log π(a_i | s_i) of the same logged action under the policy being judged

Actions are continuous (Gaussian fusion weights), so the log-probs are log-densities and the importance
weight is the density ratio ρ_i = exp(log π(a_i|s_i) − log π_b(a_i|s_i)). A deterministic target policy
has no density: judge it through a Gaussian around its action (its exploring version), as the service
serves it. Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FloatArray = np.ndarray
_MAX_LOG_WEIGHT = 700.0  # exp(700) is still a finite float64; beyond it a weight would be inf


@dataclass(frozen=True)
class LoggedRewards:
    """The arrays an estimator reads, validated to one row per decision.

    `reward_logged_pred` r̂(s_i, a_i) and `reward_target_pred` E_{a~π}[r̂(s_i, a)] are a reward model's
    predictions (doubly robust only). `groups` assigns each decision to a trajectory (a session) for
    NCIS's per-trajectory normalisation; without it the whole log is one trajectory.
    """

    rewards: FloatArray
    behaviour_log_prob: FloatArray
    target_log_prob: FloatArray
    reward_logged_pred: FloatArray | None = None
    reward_target_pred: FloatArray | None = None
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = np.shape(self.rewards)
        for name in ("behaviour_log_prob", "target_log_prob", "reward_logged_pred", "reward_target_pred", "groups"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != n:
                raise ValueError(f"{name} has shape {np.shape(value)}, rewards has {n}")
        if len(n) != 1 or n[0] == 0:
            raise ValueError("need a non-empty 1-d array of rewards")
        if not np.all(np.isfinite(self.behaviour_log_prob)):
            raise ValueError("behaviour_log_prob must be finite: a logged action of zero density cannot be reweighted")

    def __len__(self) -> int:
        return int(np.shape(self.rewards)[0])

    def log_weights(self) -> FloatArray:
        """log ρ_i = log π(a_i|s_i) − log π_b(a_i|s_i)."""
        return np.asarray(self.target_log_prob, dtype=np.float64) - np.asarray(self.behaviour_log_prob, np.float64)

    def weights(self) -> FloatArray:
        """ρ_i, with log ρ clipped at 700 so an extreme ratio is huge but finite."""
        weights: FloatArray = np.exp(np.minimum(self.log_weights(), _MAX_LOG_WEIGHT))
        return weights


@dataclass(frozen=True)
class Estimate:
    """An estimated value with its standard error and the effective sample size of the weights."""

    value: float
    stderr: float
    ess: float  # (Σρ)² / Σρ²: how many on-policy decisions the log is worth
    n: int


def _ess(weights: FloatArray) -> float:
    total = float(weights.sum())
    squares = float((weights * weights).sum())
    return total * total / squares if squares > 0 else 0.0


def _mean_estimate(terms: FloatArray, weights: FloatArray) -> Estimate:
    n = terms.shape[0]
    stderr = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Estimate(float(terms.mean()), stderr, _ess(weights), n)


def _ratio_estimate(rewards: FloatArray, weights: FloatArray) -> Estimate:
    """Σρr / Σρ with its delta-method standard error."""
    n = rewards.shape[0]
    total = weights.sum()
    if total <= 0:
        raise ValueError("all importance weights are zero: the target policy puts no density on the logged actions")
    value = float((weights * rewards).sum() / total)
    residual = weights * (rewards - value) / weights.mean()
    stderr = float(residual.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Estimate(value, stderr, _ess(weights), n)


def ips(log: LoggedRewards) -> Estimate:
    """Inverse propensity scoring: mean of ρ_i·r_i. Unbiased; its variance grows with the weights'."""
    weights = log.weights()
    return _mean_estimate(weights * np.asarray(log.rewards, np.float64), weights)


def snips(log: LoggedRewards) -> Estimate:
    """Self-normalised IPS: Σρr / Σρ. Biased O(1/n) but invariant to a constant shift of the rewards."""
    return _ratio_estimate(np.asarray(log.rewards, np.float64), log.weights())


def ncis(log: LoggedRewards, cap: float = 10.0) -> Estimate:
    """Normalised capped importance sampling, ResAct's offline metric (seed 004, "Evaluation metric"):

        J = 1/|T| Σ_{ξ∈T} [ Σ_{(s,a,r)∈ξ} ρ̃·r / Σ_{(s,a,r)∈ξ} ρ̃ ],   ρ̃ = min(ρ, cap)

    The cap trades variance for a bias towards the behaviour policy's value. Trajectories come from
    `log.groups`; without them the log is one trajectory (capped SNIPS). The standard error is over
    trajectories when there are several, else the delta method.
    """
    if cap <= 0:
        raise ValueError("cap must be positive")
    weights = np.minimum(log.weights(), cap)
    rewards = np.asarray(log.rewards, np.float64)
    if log.groups is None:
        return _ratio_estimate(rewards, weights)
    _, group = np.unique(log.groups, return_inverse=True)
    weighted = np.bincount(group, weights=weights * rewards)
    totals = np.bincount(group, weights=weights)
    if np.any(totals <= 0):
        raise ValueError("a trajectory has all-zero importance weights")
    per_trajectory = weighted / totals
    n_groups = per_trajectory.shape[0]
    stderr = float(per_trajectory.std(ddof=1) / np.sqrt(n_groups)) if n_groups > 1 else float("nan")
    return Estimate(float(per_trajectory.mean()), stderr, _ess(weights), len(log))


def direct_method(log: LoggedRewards) -> Estimate:
    """The reward model's value of the target policy, mean of E_{a~π}[r̂(s_i, a)]: no weights at all."""
    if log.reward_target_pred is None:
        raise ValueError("the direct method needs reward_target_pred")
    predicted = np.asarray(log.reward_target_pred, np.float64)
    return _mean_estimate(predicted, np.ones_like(predicted))


def doubly_robust(log: LoggedRewards) -> Estimate:
    """Doubly robust: mean of E_{a~π}[r̂(s_i, a)] + ρ_i·(r_i − r̂(s_i, a_i)).

    Unbiased when either the weights or the reward model are right; with a good model the weighted
    term only corrects residuals, so its variance is far below IPS's.
    """
    if log.reward_logged_pred is None or log.reward_target_pred is None:
        raise ValueError("doubly robust needs reward_logged_pred and reward_target_pred")
    weights = log.weights()
    residual = np.asarray(log.rewards, np.float64) - np.asarray(log.reward_logged_pred, np.float64)
    terms = np.asarray(log.reward_target_pred, np.float64) + weights * residual
    return _mean_estimate(terms, weights)


ESTIMATORS: dict[str, Callable[[LoggedRewards], Estimate]] = {
    "ips": ips,
    "snips": snips,
    "ncis": ncis,
    "dr": doubly_robust,
}


def estimate_all(log: LoggedRewards) -> dict[str, Estimate]:
    """Every estimator that the log has the inputs for (doubly robust needs the reward model's predictions)."""
    has_model = log.reward_logged_pred is not None and log.reward_target_pred is not None
    return {name: fn(log) for name, fn in ESTIMATORS.items() if name != "dr" or has_model}
