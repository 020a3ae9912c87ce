"""Decision records → the arrays the estimators read (contracts/decision_record.py is the contract).

The served fusion action is a draw from the serving policy's Gaussian: `FusionLog.raw_action` =
mean + std·noise, and `DecisionRecord.log_prob` = log π_b(raw_action | state), unrounded. A candidate
policy is judged on the same raw draws, so its log-density is taken at `raw_action` too. Shadow
records were never served and earn no reward, so they are left out. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from contracts.decision_record import DecisionRecord
from models.ope.estimators import LoggedRewards

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Σ over the last axis of log N(x; mean, std²), in float64 (models/nets/actors.py's, without torch)."""
    x, mean, std = (np.asarray(v, dtype=np.float64) for v in (x, mean, std))
    z = (x - mean) / std
    log_density: np.ndarray = (-0.5 * z * z - np.log(std) - _HALF_LOG_2PI).sum(-1)
    return log_density


@dataclass(frozen=True)
class LoggedFusion:
    """The served fusion decisions of a log, one row each."""

    request_ids: list[str]
    user_ids: list[str]
    states: np.ndarray  # [N, S] user ⊕ context, what the fusion actor saw
    raw_actions: np.ndarray  # [N, A] the Gaussian draw the propensity refers to
    behaviour_log_prob: np.ndarray  # [N]

    def __len__(self) -> int:
        return len(self.request_ids)

    def rewards_for(self, rewards: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Rewards joined by request id, and the mask of decisions that have one (feedback may be missing)."""
        has = np.array([rid in rewards for rid in self.request_ids], dtype=bool)
        values = np.array([rewards.get(rid, 0.0) for rid in self.request_ids], dtype=np.float64)
        return values, has

    def logged_rewards(
        self,
        rewards: np.ndarray,
        target_log_prob: np.ndarray,
        reward_logged_pred: np.ndarray | None = None,
        reward_target_pred: np.ndarray | None = None,
        groups: np.ndarray | None = None,
    ) -> LoggedRewards:
        """The estimators' input for a target policy whose log π(raw_action | state) is `target_log_prob`."""
        return LoggedRewards(
            rewards=np.asarray(rewards, np.float64),
            behaviour_log_prob=self.behaviour_log_prob,
            target_log_prob=np.asarray(target_log_prob, np.float64),
            reward_logged_pred=reward_logged_pred,
            reward_target_pred=reward_target_pred,
            groups=groups,
        )


def served_fusion(records: Sequence[DecisionRecord]) -> LoggedFusion:
    """The served (non-shadow) decisions' fusion states, raw actions and propensities."""
    served = [r for r in records if r.arm != "shadow"]
    if not served:
        raise ValueError("no served decisions in the log")
    return LoggedFusion(
        request_ids=[r.request_id for r in served],
        user_ids=[r.user_id for r in served],
        states=np.array([r.fusion.state for r in served], dtype=np.float64),
        raw_actions=np.array([r.fusion.raw_action for r in served], dtype=np.float64),
        behaviour_log_prob=np.array([r.log_prob for r in served], dtype=np.float64),
    )
