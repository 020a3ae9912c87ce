"""The gate's recalibrated reward model learns how far to trust each objective in each state."""

import numpy as np

from models.algorithms.reward_calibration import RewardCalibration, fit_calibration


def test_it_learns_a_state_dependent_overprediction_and_is_the_raw_model_without_data() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    state = rng.normal(size=(n, 3))
    contributions = rng.gamma(2.0, 1.0, size=(n, 2))
    # Objective 1 is overpredicted more the larger state[:, 0] (a shorter history): linear in the state,
    # the model's class (a step in the state is only approximated).
    trust = 0.6 - 0.3 * state[:, 0]
    rewards = contributions[:, 0] + trust * contributions[:, 1] + rng.normal(0.0, 0.5, n)
    fitted = fit_calibration(state, contributions, rewards)
    raw = contributions.sum(1)
    calibrated = fitted.predict(state, contributions)
    assert np.mean((rewards - calibrated) ** 2) < 0.7 * np.mean((rewards - raw) ** 2)
    short = state[:, 0] > 1.0
    assert abs(calibrated[short].mean() - rewards[short].mean()) < 0.5 * abs(raw[short].mean() - rewards[short].mean())
    few = fit_calibration(state[:5], contributions[:5], rewards[:5])
    identity = RewardCalibration.identity(2, 3)
    np.testing.assert_allclose(few.predict(state, contributions), identity.predict(state, contributions))
    np.testing.assert_allclose(identity.predict(state, contributions), raw)
