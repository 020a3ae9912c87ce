"""Off-policy evaluation from logged decisions: judge a policy from the log before it serves.

    from models.ope import LoggedRewards, estimate_all
    estimates = estimate_all(LoggedRewards(rewards, behaviour_log_prob, target_log_prob))
    estimates["ncis"].value

`estimators` holds IPS, SNIPS, NCIS and doubly robust over plain arrays; `records` turns decision
records into those arrays.
"""

from models.ope.estimators import (
    ESTIMATORS,
    Estimate,
    LoggedRewards,
    direct_method,
    doubly_robust,
    estimate_all,
    ips,
    ncis,
    snips,
)
from models.ope.records import LoggedFusion, gaussian_log_prob, served_fusion

__all__ = [
    "ESTIMATORS",
    "Estimate",
    "LoggedFusion",
    "LoggedRewards",
    "direct_method",
    "doubly_robust",
    "estimate_all",
    "gaussian_log_prob",
    "ips",
    "ncis",
    "served_fusion",
    "snips",
]
