"""Replaying logged requests with another fusion action: a reward model for the loop's trainer and the
doubly robust gate.

Why: a logged request reward is a sum of sparse, heavily weighted events (a follow is worth 40 minutes
at a 1% rate); in the demo world its standard deviation is ~75% of its mean, and a round of the loop logs
a few hundred explored decisions. A policy-gradient step on those rewards alone (models/algorithms/logged_a3c.py)
cannot see gains of a few percent, and importance-weighted estimates of them have standard errors of
6–16%. The log can hold more than the reward: with CASCADE_LOG_CANDIDATE_FEATURES the service logs each
request's candidate features and the upstream MTL model's predictions, so the request can be replayed
through the cascade with any fusion action. The reward model of a replay is the business-weighted sum of
the served items' predictions,

    r̂(s, a) = Σ_{i ∈ top-k(a)} Σ_j weight_j · p̂_ij,

the predictions the service ranks with (never the simulator's expectations). It is biased where the
predictions are; the gate corrects that bias with the logged rewards (doubly robust, models/ope).

`train_on_replay` is seed 001's actor loss, −log π(a|s)·(r̂(s,a) − b(s)), on the logged requests with
fresh Gaussian draws (several per request; the baseline b(s) is the mean of the others' r̂) and a
KL penalty that keeps the candidate's mean close to the serving policy's, measured in its exploration
std: the gate can only vouch for a candidate whose actions the log explored (importance weights stay
near 1). The fusion std is not trained: it is the exploration the next round's log and gate need.

Given a recalibration of r̂ on the training requests' logged rewards (models/algorithms/reward_calibration.py),
the trainer follows r̃ instead: a mean KL is cheap to spend on a small segment, and where r̂ is far off (in
simulator v2.1, new users' sparse predictions) a candidate trained on it moves its action there for a gain
that is not in the world; r̃ trusts each objective in each state as far as the logged rewards support.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.algorithms.reward_calibration import RewardCalibration, fit_calibration
from models.log.transitions import CandidateReplay, LoggedTransitions
from models.nets.actors import gaussian_log_prob
from models.nets.cascade import CascadePolicy, fused_scores, gather_rows, top_k


def reward_weights(objectives: Sequence[str], weights: Mapping[str, float]) -> torch.Tensor:
    """The reward's weight of each prediction column [J] (an objective without a weight counts 0)."""
    return torch.tensor([float(weights.get(name, 0.0)) for name in objectives], dtype=torch.float32)


@torch.no_grad()
def survivor_predictions(policy: CascadePolicy, state: torch.Tensor, replay: CandidateReplay) -> torch.Tensor:
    """The predictions [N, m, J] of the candidates the policy's stages keep for the fusion (stage actors at
    their mean, as served). Fusion actions do not change them: compute once, rank many times."""
    selection = policy.select(state, replay.items, torch.tensor(replay.stage_sizes), torch.tensor([replay.k]))
    return gather_rows(replay.predictions, selection.rows)


@torch.no_grad()
def replayed_contributions(
    predictions: torch.Tensor, raw_action: torch.Tensor, policy: CascadePolicy, weights: torch.Tensor, k: int
) -> torch.Tensor:
    """c_j(s, a) = w_j Σ_{i ∈ top-k(a)} p̂_ij [N, J]: each objective's weighted predictions over the top k of
    the survivors' predictions [N, m, J] under raw actions [N, A] (clipped to the action bounds, as the
    service clips them)."""
    action = torch.minimum(torch.maximum(raw_action, policy.fusion.low), policy.fusion.high)
    rows = torch.arange(predictions.shape[1]).expand(predictions.shape[0], -1)
    served, _ = top_k(fused_scores(predictions, action), rows, torch.tensor([k]))
    return (gather_rows(predictions, served) * weights).sum(-2)


def served_contributions(replay: CandidateReplay, weights: torch.Tensor) -> torch.Tensor:
    """c_j(s, a_logged) [N, J] of the items the log says were served."""
    return (gather_rows(replay.predictions, replay.served_rows) * weights).sum(-2)


def fit_replay_calibration(log: LoggedTransitions, weights: torch.Tensor, seed: int = 0) -> RewardCalibration:
    """The recalibrated reward model (models/algorithms/reward_calibration.py) fitted on every served request
    of `log` (explored or not: a regression of the reward on what was served needs no propensity)."""
    if log.replay is None:
        raise ValueError("the log holds no candidate matrices: serve with CASCADE_LOG_CANDIDATE_FEATURES=true")
    contributions = served_contributions(log.replay, weights).double().numpy()
    return fit_calibration(log.state.double().numpy(), contributions, log.reward.double().numpy(), seed=seed)


def reward_model_fit(log: LoggedTransitions, weights: torch.Tensor, calibration: RewardCalibration) -> dict[str, float]:
    """Mean logged reward, raw r̂ and recalibrated r̃ of the served requests of `log` (the gate's held-out
    ones: the calibration never saw them), and the residuals' RMS under each: how far each model is off."""
    assert log.replay is not None
    contributions = served_contributions(log.replay, weights).double().numpy()
    rewards = log.reward.double().numpy()
    raw = contributions.sum(-1)
    recalibrated = calibration.predict(log.state.double().numpy(), contributions)
    return {
        "mean_reward": float(rewards.mean()),
        "mean_raw": float(raw.mean()),
        "mean_recalibrated": float(recalibrated.mean()),
        "rms_residual_raw": float(np.sqrt(((rewards - raw) ** 2).mean())),
        "rms_residual_recalibrated": float(np.sqrt(((rewards - recalibrated) ** 2).mean())),
    }


@torch.no_grad()
def expected_replayed_reward(
    policy: CascadePolicy,
    state: torch.Tensor,
    predictions: torch.Tensor,
    weights: torch.Tensor,
    k: int,
    noise: torch.Tensor,
    calibration: RewardCalibration | None = None,
) -> torch.Tensor:
    """E_{a~π(·|s)}[r̂(s, a)] [N] by Monte Carlo over standard-normal draws noise [M, N, A] (pass the same
    draws for two policies to compare them on common random numbers); with `calibration`, of r̃(s, a)."""
    step = policy.fusion(state, torch.zeros_like(noise[0]))
    parts = [replayed_contributions(predictions, step.mean + step.std * draw, policy, weights, k) for draw in noise]
    if calibration is None:
        return torch.stack(parts).sum(-1).mean(0)
    # One prediction over all draws [M, N, J]: the state's multipliers are the same for every draw.
    values = calibration.predict(state.double().numpy(), torch.stack(parts).double().numpy())
    return torch.from_numpy(values.mean(0))


@dataclass(frozen=True)
class ReplayConfig:
    steps: int = 200  # full-batch updates over the training requests
    actor_lr: float = 1e-3
    draws: int = 4  # Gaussian draws per request and step; each one's baseline is the others' mean
    kl_coef: float = 0.03  # β of β·KL(π_candidate ‖ π_serving), in standardised reward units
    noise_clip: float = 2.0  # |ε| clipped like the service (manifest exploration.noise_clip)
    recalibrate: bool = True  # train on r̃, r̂ recalibrated on the training requests' rewards (the loop fits it)
    seed: int = 0


@dataclass(frozen=True)
class ReplayReport:
    rewards: list[float]  # mean r̂ (or r̃) of each step's draws (raw units)
    kl: float  # mean KL(candidate ‖ serving) over the training requests after training
    replay_agreement: float  # share of requests whose replay under the logged action serves the logged items
    requests: int

    def as_dict(self) -> dict[str, object]:
        return {
            "replay_reward": [self.rewards[0], self.rewards[-1]],
            "kl": self.kl,
            "replay_agreement": self.replay_agreement,
            "train_requests": self.requests,
        }


def replay_agreement(
    policy: CascadePolicy, log: LoggedTransitions, predictions: torch.Tensor, weights: torch.Tensor
) -> float:
    """How often the replay reproduces what was served (same items, same order) under the logged action:
    the check that the replay is the served cascade (ONNX in the service, torch here)."""
    assert log.replay is not None
    with torch.no_grad():
        action = torch.minimum(torch.maximum(log.raw_action, policy.fusion.low), policy.fusion.high)
        rows = torch.arange(predictions.shape[1]).expand(predictions.shape[0], -1)
        served, _ = top_k(fused_scores(predictions, action), rows, torch.tensor([log.replay.k]))
        selection = policy.select(
            log.state, log.replay.items, torch.tensor(log.replay.stage_sizes), torch.tensor([log.replay.k])
        )
        candidate_rows = torch.gather(selection.rows, 1, served)
    return float((candidate_rows == log.replay.served_rows).all(-1).float().mean())


def train_on_replay(
    policy: CascadePolicy,
    log: LoggedTransitions,
    weights: torch.Tensor,
    config: ReplayConfig,
    calibration: RewardCalibration | None = None,
) -> ReplayReport:
    """Improve `policy`'s fusion mean in place on the log's replayed requests (any row, explored or not: the
    reward model needs no propensity), on r̂ or, with `calibration`, on r̃. Seeded by `config.seed`; the
    caller's torch RNG is left as it was."""
    if log.replay is None:
        raise ValueError("the log holds no candidate matrices: serve with CASCADE_LOG_CANDIDATE_FEATURES=true")
    objectives = weights.shape[-1]
    trust = torch.ones(len(log), objectives)
    if calibration is not None:
        trust = torch.from_numpy(calibration.multipliers(log.state.double().numpy())).float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _train_on_replay(policy, log, log.replay, weights, trust, config)


def _train_on_replay(
    policy: CascadePolicy,
    log: LoggedTransitions,
    replay: CandidateReplay,
    weights: torch.Tensor,
    trust: torch.Tensor,  # [N, J] multipliers of each objective's contribution: ones for r̂
    config: ReplayConfig,
) -> ReplayReport:
    fusion = policy.fusion
    predictions = survivor_predictions(policy, log.state, replay)
    agreement = replay_agreement(policy, log, predictions, weights)

    def reward(raw: torch.Tensor) -> torch.Tensor:
        return (replayed_contributions(predictions, raw, policy, weights, replay.k) * trust).sum(-1)

    zeros = torch.zeros(len(log), fusion.action_dim)
    with torch.no_grad():
        serving_mean = fusion(log.state, zeros).mean.clone()
    optimiser = torch.optim.Adam(fusion.net.parameters(), lr=config.actor_lr)
    scale: float | None = None
    rewards: list[float] = []
    for _ in range(config.steps):
        step = fusion(log.state, zeros)
        noise = torch.randn(config.draws, len(log), fusion.action_dim).clamp(-config.noise_clip, config.noise_clip)
        raw = step.mean.detach() + step.std.detach() * noise
        r = torch.stack([reward(raw[d]) for d in range(config.draws)])
        if scale is None:  # a fixed affine map: the learning rate does not depend on the reward's units
            scale = float(r.std()) + 1e-8
        # Leave-one-out baseline: each draw against the mean of the request's other draws.
        advantage = (r - r.mean(0, keepdim=True)) * config.draws / (config.draws - 1) / scale
        log_prob = gaussian_log_prob(raw, step.mean, step.std)  # [draws, N]
        kl = (((step.mean - serving_mean) / step.std) ** 2 / 2).sum(-1).mean()
        loss = -(log_prob * advantage).mean() + config.kl_coef * kl
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        rewards.append(float(r.mean()))
    with torch.no_grad():
        step = fusion(log.state, zeros)
        kl_after = float((((step.mean - serving_mean) / step.std) ** 2 / 2).sum(-1).mean())
    policy.eval()
    return ReplayReport(rewards, kl_after, agreement, len(log))


def draws(n_draws: int, rows: int, action_dim: int, seed: int, noise_clip: float = 2.0) -> torch.Tensor:
    """Seeded standard-normal draws [M, N, A], clipped like the service's, for Monte Carlo expectations."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((n_draws, rows, action_dim)).clip(-noise_clip, noise_clip)).float()
