"""Simulator v2: the calibration at small size and the mechanisms the seed methods rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.reports.calibration import calibration_markdown
from models.sim.calibration import calibration_table, logging_items
from models.sim.session import SessionConfig
from models.sim.world import HISTORY_LEVELS, SimulatorV2, world_config
from models.sim.world_session import SessionsV2


@pytest.fixture(scope="module")
def sim() -> SimulatorV2:
    return SimulatorV2(seed=0)


def test_calibration_table_runs_at_small_size_and_hits_the_main_rates() -> None:
    table = {row.name: row for row in calibration_table(seed=1, users=3000, sessions=300)}
    assert len(table) >= 25
    # At 3,000 users the sampling error of a 1.8 % rate is ~6 %: the main targets must be close.
    for name in ("valid play, random exposure", "valid play, logging-like", "long view | play, logging-like"):
        assert abs(table[name].error) < 0.10, (name, table[name].measured)
    assert abs(table["like, logging-like"].error) < 0.25
    assert table["P(like | LV) / P(like | play, no LV)"].measured > 2.0  # interactions nested in long views


def test_calibration_markdown_has_a_row_per_target() -> None:
    text = calibration_markdown((0,), users=1000, sessions=100)
    assert "| valid play, random exposure |" in text and "targets within tolerance" in text


def test_interactions_happen_only_on_plays_and_follows_cluster_on_likes(sim: SimulatorV2) -> None:
    rng = np.random.default_rng(0)
    users = sim.sample_users(4000, rng)
    items = logging_items(sim, users, rng)
    draws = sim.sample_from(users, sim.exposure(users, items), rng)
    for name in ("like", "follow", "share", "comment", "long_view"):
        assert (draws[name] <= draws["play"]).all(), name
    like = draws["like"] > 0
    assert draws["follow"][like].mean() > 5 * draws["follow"][~like].mean()


def test_users_differ_in_what_they_respond_to(sim: SimulatorV2) -> None:
    """Segment and social propensity change interaction rates: the observable heterogeneity."""
    rng = np.random.default_rng(1)
    users = np.arange(sim.config.n_users)
    items = rng.integers(0, sim.config.n_items, size=(users.size, 6))
    like = sim.expected_responses(users, items, np.zeros((users.size, 4)))[..., 1].mean(1)
    full, low = like[sim.segment == 0].mean(), like[sim.segment == 4].mean()
    assert low > 1.5 * full
    # The segment and the social propensity are in the features the policy sees.
    assert np.array_equal(sim.user_features[:, :5].argmax(1), sim.segment)
    assert np.corrcoef(sim.user_features[:, 5], sim.social)[0, 1] > 0.9


def _run_sessions(sim: SimulatorV2, n: int, follow_boost: bool, seed: int) -> float:
    """Mean session depth when every played item is followed (or never), the rest identical."""
    sessions = SessionsV2(sim, n, np.random.default_rng(seed), SessionConfig(max_depth=60), refill=False)
    rng = np.random.default_rng(seed + 1)
    depth = np.zeros(n)
    original = sim.sample_from

    def forced(users: np.ndarray, e: object, r: np.random.Generator) -> dict[str, np.ndarray]:
        out = original(users, e, r)  # type: ignore[arg-type]
        out["follow"] = out["play"].copy() if follow_boost else np.zeros_like(out["play"])
        return out

    sim.sample_from = forced  # type: ignore[method-assign]
    try:
        while sessions.active.any():
            active = sessions.active.copy()
            items = rng.integers(0, sim.config.n_items, size=(n, 6))
            sessions.step(sessions.requests(), items)
            depth[active] += 1
    finally:
        sim.sample_from = original  # type: ignore[method-assign]
    return float(depth.mean())


def test_follows_keep_users_longer(sim: SimulatorV2) -> None:
    """A sparse interaction with a long-term effect: the same sessions with follows last longer."""
    assert _run_sessions(sim, 400, True, 3) > 1.2 * _run_sessions(sim, 400, False, 3)


def test_session_lengths_are_smooth_not_a_cliff(sim: SimulatorV2) -> None:
    sessions = SessionsV2(sim, 2000, np.random.default_rng(4), SessionConfig(max_depth=60), refill=False)
    rng = np.random.default_rng(5)
    depth = np.zeros(2000)
    while sessions.active.any():
        active = sessions.active.copy()
        sessions.step(sessions.requests(), logging_items(sim, sessions.users, rng))
        depth[active] += 1
    counts = np.bincount(depth.astype(int), minlength=61)[1:]
    # Every depth from 1 to 20 is reached by some sessions, none holds more than a fifth of them.
    assert (counts[:20] > 0).all() and counts.max() < 0.2 * depth.size


def _exposures(sim: SimulatorV2, n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, 40 random items each, context, E[y]) for `n_users` users of `sim`, from a fixed stream."""
    rng = np.random.default_rng(0)
    users = sim.sample_users(n_users, rng)
    items = rng.integers(0, sim.config.n_items, size=(len(users), 40))
    context = sim.sample_requests(len(users), 2, rng).context
    return users, items, context, sim.expected_responses(users, items, context)


def _unclipped(p: np.ndarray) -> np.ndarray:
    """Where `_logit` does not clip."""
    inside: np.ndarray = (p > 1e-7) & (p < 1 - 1e-7)
    return inside


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    out: np.ndarray = np.log(p / (1 - p))
    return out


def test_v21_sparse_predictions_get_worse_as_a_users_history_shrinks() -> None:
    v2, v21 = SimulatorV2(seed=3), SimulatorV2(seed=3, world=world_config("v2.1"))
    users, items, context, expected = _exposures(v21, 3000)
    # The world itself is v2's: v2.1 changes what the ranking model predicts, nothing the user does.
    np.testing.assert_array_equal(expected, v2.expected_responses(users, items, context))
    predicted = v21.predictions(users, items, context, np.random.default_rng(1)).astype(np.float64)
    sparse_error = _logit(predicted[..., 1:]) - _logit(expected[..., 1:])
    uncapped = predicted[..., 0] < v21.config.max_watch_time
    watch_error = np.where(uncapped, np.log(predicted[..., 0] / expected[..., 0]), np.nan)
    level = np.asarray(HISTORY_LEVELS)[v21.segment[users]]
    for lv in np.unique(level):
        rows = level == lv
        want = v21.world.prediction_noise * v21.world.history_decay ** (lv / 2)
        assert sparse_error[rows].std() == pytest.approx(want, rel=0.1), lv
        # Watch time is logged on every exposure: its error does not depend on the history.
        assert np.nanstd(watch_error[rows]) == pytest.approx(v21.world.prediction_noise, rel=0.1), lv
    assert v21.world.history_decay > 1.0 and v2.world.history_decay == 1.0
    assert np.all(v2.sparse_prediction_noise == v2.world.prediction_noise)


def test_worlds_are_named_and_an_unknown_name_is_refused() -> None:
    assert world_config("v2") == SimulatorV2(seed=0).world
    assert world_config("v2.1").history_decay > 1.0
    with pytest.raises(ValueError, match=r"v2\.1"):
        world_config("v3")


def test_v22_stage_heads_learn_targets_with_errors_of_their_own() -> None:
    v21, v22 = SimulatorV2(seed=4, world=world_config("v2.1")), SimulatorV2(seed=4, world=world_config("v2.2"))
    users, items, context, expected = _exposures(v22, 500)
    # Nothing users do or the ranking model predicts changes: v2.2 is v2.1 draw for draw.
    np.testing.assert_array_equal(expected, v21.expected_responses(users, items, context))
    np.testing.assert_array_equal(
        v22.predictions(users, items, context, np.random.default_rng(1)),
        v21.predictions(users, items, context, np.random.default_rng(1)),
    )
    errors = []
    for stage, sd in enumerate(v22.world.stage_bias):
        assert v21.stage_targets(stage, items, expected) is expected  # v2.1's stages learn the truth
        target = v22.stage_targets(stage, items, expected)
        sparse_error = _logit(target[..., 1:]) - _logit(expected[..., 1:])
        # A fixed error per (item, objective) of sd σ_s over the catalogue, the same for every user (where
        # E[y] is not clipped away from 0: a response with no play has no interaction to predict).
        representable = _unclipped(expected[..., 1:]) & _unclipped(target[..., 1:])
        assert representable.mean() > 0.5
        np.testing.assert_allclose(
            sparse_error[representable], v22.stage_bias[stage][items][..., 1:][representable], atol=1e-4
        )
        assert v22.stage_bias[stage].std(axis=0) == pytest.approx(np.full(5, sd), rel=1e-6)
        uncapped = target[..., 0] < v22.config.max_watch_time
        np.testing.assert_allclose(
            np.log(target[..., 0] / expected[..., 0])[uncapped], v22.stage_bias[stage][items][..., 0][uncapped]
        )
        errors.append(v22.stage_bias[stage].ravel())
    # Pre-ranking errs more than ranking, and the stages err differently (they disagree).
    assert v22.world.stage_bias[1] > v22.world.stage_bias[2] > 0.0
    assert abs(np.corrcoef(errors[0], errors[1])[0, 1]) < 0.2
    # The errors are a function of what a head sees (the item's features), so training learns them.
    features = np.c_[v22.item_features, np.ones(len(v22.item_features))]
    residuals = np.linalg.lstsq(features, v22.stage_bias[1], rcond=None)[1]
    assert np.all(residuals < 1e-6 * len(features))


def test_stage_heads_are_fitted_to_their_own_stage_targets() -> None:
    from models.algorithms.supervised import response_batch

    v21, v22 = SimulatorV2(seed=4, world=world_config("v2.1")), SimulatorV2(seed=4, world=world_config("v2.2"))
    *_, same = response_batch(v21, 8, 5, np.random.default_rng(2))
    *_, own = response_batch(v22, 8, 5, np.random.default_rng(2))
    assert all(torch.equal(same[0], y) for y in same)
    assert (own[0] != own[2]).float().mean() > 0.9
    assert world_config("v2.2").history_decay == world_config("v2.1").history_decay


def test_the_stage_agreement_probe_measures_rank_correlations() -> None:
    from models.experiments.stage_agreement import agreement, spearman
    from models.experiments.world_v2 import V2Config, in_world, small

    scores = np.random.default_rng(0).standard_normal((6, 30))
    assert spearman(scores, 3 * scores + 1) == pytest.approx(1.0)
    assert spearman(scores, -scores) == pytest.approx(-1.0)
    cfg = small(in_world(V2Config(), "v2.2"))
    assert cfg.stage_score == "logits" and in_world(V2Config(), "v2.1").stage_score == "predictions"
    measured = agreement(0, cfg, requests=16)
    assert {"matching vs truth", "ranking vs truth", "matching vs ranking"} <= set(measured)
    assert all(-1.0 <= value <= 1.0 for value in measured.values())
    # The simulator's own ranking predictions are informative: they are the truth with v2.1's noise.
    assert measured["MTL predictions (the fusion's input) vs truth"] > 0.5
