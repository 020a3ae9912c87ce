"""Each OPE estimator recovers a value that is known in closed form, on a synthetic Gaussian-action log.

The log is a contextual bandit with a continuous action, as the fusion actor's: s ~ N(0, 1), the
behaviour policy draws a ~ N(0.5·s, 1), the reward is r = −(a − s)² + ε with ε ~ N(0, 0.01). A target
policy N(m·s, σ²) then has the exact value

    V(π) = −E[(a − s)²] = −((m − 1)²·E[s²] + σ²) = −((m − 1)² + σ²).

With σ = 0.6 < 1 the density ratio is bounded, so IPS has finite variance. Tolerances are 4 standard
errors (each estimator's own, checked to be small): a correct estimator fails one with probability
< 1e-4, a wrong formula (e.g. a weight with the sign of the log-ratio flipped) misses by far more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from models.ope import (
    LoggedRewards,
    direct_method,
    doubly_robust,
    estimate_all,
    gaussian_log_prob,
    ips,
    ncis,
    snips,
)

BEHAVIOUR_SLOPE, BEHAVIOUR_STD = 0.5, 1.0
TARGET_SLOPE, TARGET_STD = 0.8, 0.6
TRUE_VALUE = -((TARGET_SLOPE - 1.0) ** 2 + TARGET_STD**2)  # −0.40
BEHAVIOUR_VALUE = -((BEHAVIOUR_SLOPE - 1.0) ** 2 + BEHAVIOUR_STD**2)  # −1.25


def _log(n: int, seed: int, groups: int | None = None) -> tuple[LoggedRewards, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(n)
    a = BEHAVIOUR_SLOPE * s + BEHAVIOUR_STD * rng.standard_normal(n)
    r = -((a - s) ** 2) + 0.1 * rng.standard_normal(n)
    behaviour = gaussian_log_prob(a[:, None], BEHAVIOUR_SLOPE * s[:, None], np.full((n, 1), BEHAVIOUR_STD))
    target = gaussian_log_prob(a[:, None], TARGET_SLOPE * s[:, None], np.full((n, 1), TARGET_STD))
    group_ids = None if groups is None else np.repeat(np.arange(groups), n // groups)
    return LoggedRewards(r, behaviour, target, groups=group_ids), np.stack([s, a], axis=1)


def _assert_recovers(estimate_value: float, stderr: float, truth: float) -> None:
    assert stderr < 0.03  # the test has the power to see a wrong estimator
    assert abs(estimate_value - truth) < 4 * stderr, (estimate_value, truth, stderr)


@pytest.mark.parametrize("estimator", [ips, snips])
def test_importance_sampling_recovers_the_target_policys_value(estimator: Callable[[LoggedRewards], Any]) -> None:
    log, _ = _log(40_000, seed=1)
    estimate = estimator(log)
    _assert_recovers(estimate.value, estimate.stderr, TRUE_VALUE)
    assert abs(estimate.value - BEHAVIOUR_VALUE) > 0.5  # it is not just the logged average


def test_ncis_with_a_cap_that_never_binds_recovers_the_value_per_trajectory() -> None:
    log, _ = _log(40_000, seed=2, groups=100)  # 100 trajectories of 400 decisions
    assert log.weights().max() < 50.0
    estimate = ncis(log, cap=50.0)
    _assert_recovers(estimate.value, estimate.stderr, TRUE_VALUE)


def test_ncis_with_a_binding_cap_recovers_the_capped_ratio_computed_by_quadrature() -> None:
    """A cap of 0.8 binds; NCIS then estimates E_b[min(ρ, c)·r] / E_b[min(ρ, c)], which lies between
    the behaviour and target values. Its exact value: a 2-d integral over (s, a), on a fine grid."""
    cap = 0.8
    grid_s = np.linspace(-7, 7, 1401)
    grid_a = np.linspace(-10, 10, 2001)
    s, a = np.meshgrid(grid_s, grid_a, indexing="ij")
    density_s = np.exp(-0.5 * s**2) / np.sqrt(2 * np.pi)
    log_b = -0.5 * ((a - BEHAVIOUR_SLOPE * s) / BEHAVIOUR_STD) ** 2 - np.log(BEHAVIOUR_STD)
    log_t = -0.5 * ((a - TARGET_SLOPE * s) / TARGET_STD) ** 2 - np.log(TARGET_STD)
    behaviour_density = density_s * np.exp(log_b) / np.sqrt(2 * np.pi)
    capped = np.minimum(np.exp(log_t - log_b), cap)
    truth = float((behaviour_density * capped * -((a - s) ** 2)).sum() / (behaviour_density * capped).sum())

    log, _ = _log(40_000, seed=3)
    estimate = ncis(log, cap=cap)

    assert BEHAVIOUR_VALUE + 0.1 < truth < TRUE_VALUE - 0.1  # the cap's bias is real and measured
    _assert_recovers(estimate.value, estimate.stderr, truth)


def test_doubly_robust_recovers_the_value_with_a_wrong_reward_model_and_beats_ips_with_a_right_one() -> None:
    log, sa = _log(40_000, seed=4)
    s, a = sa[:, 0], sa[:, 1]
    # Exact model: r̂(s, a) = −(a − s)²; E_{a~π}[r̂] = −((m − 1)²s² + σ²).
    exact = LoggedRewards(
        log.rewards,
        log.behaviour_log_prob,
        log.target_log_prob,
        reward_logged_pred=-((a - s) ** 2),
        reward_target_pred=-(((TARGET_SLOPE - 1.0) * s) ** 2 + TARGET_STD**2),
    )
    # Wrong model (a constant −1): the weights alone must carry the correction.
    wrong = LoggedRewards(
        log.rewards,
        log.behaviour_log_prob,
        log.target_log_prob,
        reward_logged_pred=np.full_like(a, -1.0),
        reward_target_pred=np.full_like(a, -1.0),
    )

    good, bad = doubly_robust(exact), doubly_robust(wrong)

    _assert_recovers(good.value, good.stderr, TRUE_VALUE)
    _assert_recovers(bad.value, bad.stderr, TRUE_VALUE)
    assert good.stderr < 0.5 * ips(log).stderr
    assert direct_method(wrong).value == pytest.approx(-1.0)  # the model alone is wrong by 0.6


def test_estimate_all_skips_doubly_robust_without_a_reward_model_and_weights_are_identity_on_policy() -> None:
    log, _ = _log(2_000, seed=5)
    on_policy = LoggedRewards(log.rewards, log.behaviour_log_prob, log.behaviour_log_prob)

    estimates = estimate_all(on_policy)

    assert set(estimates) == {"ips", "snips", "ncis"}
    mean = float(np.mean(log.rewards))
    assert all(e.value == pytest.approx(mean) for e in estimates.values())
    assert estimates["ips"].ess == pytest.approx(2_000)


def test_inputs_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="target_log_prob"):
        LoggedRewards(np.zeros(3), np.zeros(3), np.zeros(2))
