"""The promotion gate of the loop: a candidate serves only if off-policy evaluation on held-out logged
decisions says it beats the active version by the configured margin (issue 8).

Both versions are judged by the same estimator (models/ope, issue 5) on the same held-out explored
decisions, each as the Gaussian it would serve while exploring: target log π(raw | s) of the logged
raw draws against the logged propensity. Held-out users never reach the trainer (split by a hash of
the user id, so a session is never split). The verdict and its numbers go into the candidate
bundle's manifest (`evaluation`), published or not.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from models.cascade import CascadePolicy
from models.logged_a3c import LoggedTransitions, fusion_log_prob
from models.ope import ESTIMATORS, Estimate, LoggedRewards


@dataclass(frozen=True)
class GateConfig:
    estimator: str = "snips"  # one of models.ope.ESTIMATORS without a reward model: ips, snips, ncis
    margin: float = 0.02  # the candidate must beat the active estimate by this share of |active|
    min_ess: float = 30.0  # fewer effective held-out decisions than this under the candidate: no verdict
    held_out_fraction: float = 0.3


@dataclass(frozen=True)
class GateVerdict:
    publish: bool
    reason: str
    estimator: str
    active: Estimate
    candidate: Estimate
    margin: float

    def as_dict(self) -> dict[str, object]:
        return {
            "gate": "publish" if self.publish else "refuse",
            "reason": self.reason,
            "estimator": self.estimator,
            "margin": self.margin,
            "active": asdict(self.active),
            "candidate": asdict(self.candidate),
        }


def held_out_mask(user_ids: list[str], fraction: float, seed: int = 0) -> np.ndarray:
    """True for the users kept out of training (a stable hash of the id and the seed)."""
    cut = int(fraction * 1000)
    return np.array([zlib.crc32(f"{seed}:{u}".encode()) % 1000 < cut for u in user_ids], dtype=bool)


@torch.no_grad()
def judge(
    active: CascadePolicy, candidate: CascadePolicy, held_out: LoggedTransitions, config: GateConfig
) -> GateVerdict:
    """Estimate both versions' value on the held-out log; publish only if the candidate wins by the margin."""
    estimator = ESTIMATORS[config.estimator]
    behaviour = held_out.behaviour_log_prob.double().numpy()
    rewards = held_out.reward.double().numpy()

    def value(policy: CascadePolicy) -> Estimate:
        target = fusion_log_prob(policy, held_out.state, held_out.raw_action).double().numpy()
        return estimator(LoggedRewards(rewards=rewards, behaviour_log_prob=behaviour, target_log_prob=target))

    active_value, candidate_value = value(active), value(candidate)
    bar = active_value.value + config.margin * abs(active_value.value)
    if candidate_value.ess < config.min_ess:
        publish, reason = (
            False,
            f"candidate ESS {candidate_value.ess:.1f} < {config.min_ess:g}: the log cannot judge it",
        )
    elif candidate_value.value <= bar:
        publish, reason = False, f"candidate {candidate_value.value:.4g} does not beat {bar:.4g} (active + margin)"
    else:
        publish, reason = True, f"candidate {candidate_value.value:.4g} > {bar:.4g} (active + margin)"
    return GateVerdict(publish, reason, config.estimator, active_value, candidate_value, config.margin)
