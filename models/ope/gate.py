"""The promotion gate of the loop: a candidate serves only if off-policy evaluation on held-out logged
decisions says it beats the active version by the configured margin.

Both versions are judged by the same estimator (models/ope) on the same held-out explored
decisions, each as the Gaussian it would serve while exploring: target log π(raw | s) of the logged
raw draws against the logged propensity. The candidate must win by the margin at the lower confidence
bound of the paired difference (a bootstrap over decisions), not only on the point estimates. Held-out
users never reach the trainer (split by a hash of the user id, so a session is never split). The
verdict and its numbers go into the candidate bundle's manifest (`evaluation`), published or not.

Doubly robust (`estimator="dr"`) needs the held-out decisions' candidates
(models/algorithms/replay_trainer.py): its reward
model is the replay's business-weighted MTL predictions, r̂(s, a), and each version's value is
mean_i[E_{a~π}[r̂(s_i, a)] + ρ_i·(r_i − r̂(s_i, a_i))], the expectation by Monte Carlo over draws that both
versions share. The logged rewards correct the model's bias (the estimate is unbiased whenever the
propensities are right); the paired difference of two nearby versions is then mostly the model's
difference, whose noise is far below the rewards'. Where the predictions are badly biased, the residuals
are large exactly where a candidate trained on them moves, and the correction rests on a few effective
decisions: pass the recalibrated model (models/algorithms/reward_calibration.py, fitted on the training
users) and r̂ above is r̃.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from models.algorithms.logged_a3c import fusion_log_prob
from models.algorithms.replay_trainer import (
    draws,
    expected_replayed_reward,
    served_contributions,
    survivor_predictions,
)
from models.algorithms.reward_calibration import RewardCalibration
from models.log.transitions import LoggedTransitions
from models.nets.cascade import CascadePolicy
from models.ope import ESTIMATORS, Estimate, LoggedRewards


@dataclass(frozen=True)
class GateConfig:
    # One of models.ope.ESTIMATORS: ips, snips, ncis, or dr (needs the log's candidates and reward weights).
    estimator: str = "snips"
    margin: float = 0.02  # the candidate must beat the active estimate by this share of |active|
    min_ess: float = 30.0  # fewer effective held-out decisions than this under the candidate: no verdict
    held_out_fraction: float = 0.3
    # The margin must hold for the lower `confidence` bound of the paired difference (candidate − active,
    # bootstrapped over held-out decisions), not only for the point estimates: with a few hundred noisy
    # rewards the estimates alone differ by several percent by chance, and a gate on them promotes noise.
    confidence: float = 0.95
    bootstrap: int = 400
    model_draws: int = 32  # Monte Carlo draws of E_{a~π}[r̂(s, a)] (dr only)
    # dr's reward model: the replay's MTL predictions recalibrated on the training users' logged rewards
    # (models/algorithms/reward_calibration.py), or, when False, the raw predictions.
    recalibrate: bool = True
    seed: int = 0


@dataclass(frozen=True)
class GateVerdict:
    publish: bool
    reason: str
    estimator: str
    active: Estimate
    candidate: Estimate
    margin: float
    difference_lower_bound: float  # the `confidence` lower bound of candidate − active

    def as_dict(self) -> dict[str, object]:
        return {
            "gate": "publish" if self.publish else "refuse",
            "reason": self.reason,
            "estimator": self.estimator,
            "margin": self.margin,
            "active": asdict(self.active),
            "candidate": asdict(self.candidate),
            "difference_lower_bound": self.difference_lower_bound,
        }


def held_out_mask(user_ids: list[str], fraction: float, seed: int = 0) -> np.ndarray:
    """True for the users kept out of training (a stable hash of the id and the seed)."""
    cut = int(fraction * 1000)
    return np.array([zlib.crc32(f"{seed}:{u}".encode()) % 1000 < cut for u in user_ids], dtype=bool)


@torch.no_grad()
def judge(
    active: CascadePolicy,
    candidate: CascadePolicy,
    held_out: LoggedTransitions,
    config: GateConfig,
    reward_weights: torch.Tensor | None = None,
    calibration: RewardCalibration | None = None,
) -> GateVerdict:
    """Estimate both versions' value on the held-out log; publish only if the candidate wins by the margin.
    `reward_weights` [J] (models.algorithms.replay_trainer.reward_weights) are the reward model's, for `dr`;
    `calibration`, fitted on the training users' requests (never on `held_out`), recalibrates it."""
    estimator = ESTIMATORS[config.estimator]
    held_out = held_out.explored_rows()
    behaviour = held_out.behaviour_log_prob.double().numpy()
    rewards = held_out.reward.double().numpy()
    policies = (active, candidate)
    targets = [fusion_log_prob(p, held_out.state, held_out.raw_action).double().numpy() for p in policies]
    logged_pred: np.ndarray | None = None
    target_preds: list[np.ndarray | None] = [None, None]
    if config.estimator == "dr":
        if held_out.replay is None or reward_weights is None:
            raise ValueError("the dr gate needs the log's candidates (CASCADE_LOG_CANDIDATE_FEATURES) and weights")
        k = held_out.replay.k
        noise = draws(config.model_draws, len(held_out), active.fusion.action_dim, config.seed)
        predictions = [survivor_predictions(p, held_out.state, held_out.replay) for p in policies]
        # the model's reward of the logged action: of the items actually served
        served = served_contributions(held_out.replay, reward_weights)
        if calibration is None:
            logged_pred = served.sum(-1).double().numpy()
        else:
            logged_pred = calibration.predict(held_out.state.double().numpy(), served.double().numpy())
        target_preds = [
            expected_replayed_reward(p, held_out.state, pred, reward_weights, k, noise, calibration).double().numpy()
            for p, pred in zip(policies, predictions, strict=True)
        ]

    def value(version: int, rows: np.ndarray | slice = slice(None)) -> Estimate:
        model = target_preds[version]
        return estimator(
            LoggedRewards(
                rewards[rows],
                behaviour[rows],
                targets[version][rows],
                reward_logged_pred=None if logged_pred is None else logged_pred[rows],
                reward_target_pred=None if model is None else model[rows],
            )
        )

    active_value, candidate_value = value(0), value(1)
    # Paired bootstrap over held-out decisions: both versions judged on the same resampled rows.
    rng = np.random.default_rng(config.seed)
    n = len(rewards)
    differences = []
    for _ in range(config.bootstrap):
        rows = rng.integers(0, n, n)
        differences.append(value(1, rows).value - value(0, rows).value)
    lower = float(np.quantile(differences, 1.0 - config.confidence))
    needed = config.margin * abs(active_value.value)
    if candidate_value.ess < config.min_ess:
        publish, reason = False, f"candidate ESS {candidate_value.ess:.1f} < {config.min_ess:g}: too few to judge"
    elif lower <= needed:
        publish = False
        reason = (
            f"candidate − active ≥ {lower:.4g} at {config.confidence:.0%} (point {candidate_value.value:.4g} vs "
            f"{active_value.value:.4g}); the margin needs > {needed:.4g}"
        )
    else:
        publish = True
        reason = f"candidate − active ≥ {lower:.4g} at {config.confidence:.0%} > margin {needed:.4g}"
    return GateVerdict(publish, reason, config.estimator, active_value, candidate_value, config.margin, lower)
