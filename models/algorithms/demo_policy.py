"""The demo policy: train a small CascadePolicy on the simulator (pipelines/demo.py exports and publishes it).

Not a paper method of its own: the recipe that chains three of them into the policy `cascade demo` serves.

Training, in order, all seeded:
1. supervised: the three stages' prediction heads on sampled simulator responses (models/algorithms/supervised.py);
2. RND: the predictor on simulated user states, so seen users have a low novelty bonus (models/algorithms/rnd.py);
3. A3C with γ = 0: the fusion actor and the three stage actors as Gaussian policies on a shared request
   reward, stage actors served at their mean (models/algorithms/a3c.py), on pools of 200 candidates.

With `world="v2"` (`session_demo_config`) step 3 is instead the session A3C with γ = `gamma` > 0 in
simulator v2 (SIMULATOR.md): the fusion actor learns what keeps users in the session (their session
return), not the reward of one request, and the manifest reports its session return against uniform
weights on held-out users and its powers as scale-free shares. The recipe is `cascade experiment v2`'s
`demo_a3c` row: rewards E[r | s, a] (the signal CEM scores its constants with; sampled Bernoulli
interactions left the actor's gradient below its noise in 200 updates), powers with a fixed sum (the
fused score has no gradient along their common scale), 400 updates. In simulator v2.1 step 3 is the
`contextual_cem` row's recipe instead: the best constant by CEM on the session return, then one action
per activity segment searched from it (models/algorithms/contextual_cem.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from contracts.manifest import Exploration, FeatureSchema, FusionAction, Stage
from models.algorithms.a3c import A3CConfig, SessionA3CConfig, train_a3c, train_actors
from models.algorithms.cem import SessionCEMConfig, cem_session_action
from models.algorithms.contextual_cem import ContextualCEMConfig, fit_segment_table
from models.algorithms.rnd import train_rnd
from models.algorithms.supervised import train_heads
from models.env.episodes import RunConfig, evaluate
from models.env.rollout import evaluate_fusion, user_states
from models.nets.cascade import STAGES, CascadePolicy, PolicyConfig
from models.sim.config import SimConfig
from models.sim.session import SessionConfig
from models.sim.simulator import Simulator
from models.sim.world import V2_WORLDS, WorldName, simulator_in, v2_sim_config


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 0
    sim: SimConfig = field(default_factory=SimConfig)
    stage_sizes: tuple[int, int, int] = (500, 100, 50)  # served: matching, pre-ranking, ranking keep
    k: int = 10
    head_steps: int = 300
    rnd_steps: int = 300
    a3c: A3CConfig = field(default_factory=lambda: A3CConfig(steps=300, actor_lr=5e-3))
    exploration_probability: float = 0.1
    noise_clip: float = 2.0
    eval_requests: int = 300  # full-size requests (candidates_per_request, served stage sizes) for the manifest
    threads: int = 2
    world: WorldName = "v1"
    gamma: float = 0.95  # v2: the session A3C's discount
    session_run: RunConfig = field(
        default_factory=lambda: RunConfig(
            steps=400,
            sessions=128,
            n_candidates=100,
            stage_sizes=(60, 40, 20),
            k=6,
            session=SessionConfig(max_depth=60),
            reward="expected",
        )
    )
    eval_users: int = 400  # v2: held-out users (seed 10_000 + seed) of the session evaluation
    # v2 worlds: how the fusion actor is trained. "a3c": the session A3C above; "contextual_cem": the best
    # constant by CEM on the session return, then one action per activity segment searched from it
    # (models/algorithms/contextual_cem.py), written into the actor's MLP.
    fusion_search: Literal["a3c", "contextual_cem"] = "a3c"
    cem: SessionCEMConfig = field(default_factory=SessionCEMConfig)
    contextual: ContextualCEMConfig = field(default_factory=ContextualCEMConfig)


def session_demo_config(seed: int = 0, world: WorldName = "v2") -> DemoConfig:
    """The demo in simulator v2 (or v2.1). No session features in the state: a served request's context
    stays the 4 columns clients send (the actor personalises on the user's segment and social features)."""
    # v2.1 has one best action per activity segment and A3C does not find it (RESULTS.md `world:v21`):
    # its demo searches them directly. v2 has no such headroom (`sim:headroom`): its demo stays the A3C.
    search: Literal["a3c", "contextual_cem"] = "contextual_cem" if world == "v2.1" else "a3c"
    return DemoConfig(
        seed=seed, sim=replace(v2_sim_config(), session_features=()), world=world, k=6, fusion_search=search
    )


def demo_world(config: DemoConfig) -> Simulator:
    """The simulated world the demo of `config` is trained in (and the loop serves its users from)."""
    return simulator_in(config.world, config.sim, config.seed)


@dataclass
class DemoTraining:
    policy: CascadePolicy
    simulator: Simulator
    report: dict[str, object]  # goes into the manifest's `training`
    evaluation: dict[str, object]  # goes into the manifest's `evaluation`


@contextmanager
def _seeded_torch(seed: int, threads: int) -> Iterator[None]:
    """Seed torch and pin its thread count for the block, restoring the caller's RNG and threads after."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous_threads)


def train_demo_policy(config: DemoConfig | None = None) -> DemoTraining:
    """Train the demo policy (heads, RND, A3C) on a seeded simulator; deterministic for a given config."""
    config = config or DemoConfig()
    with _seeded_torch(config.seed, config.threads):
        started = time.perf_counter()
        if config.world in V2_WORLDS:
            return _train_session_demo(config, started)
        sim = demo_world(config)
        rng = np.random.default_rng([config.seed, 2])
        policy = CascadePolicy(PolicyConfig.from_sim(config.sim))
        heads = train_heads(policy, sim, rng, steps=config.head_steps)
        rnd_losses = train_rnd(policy.rnd, lambda n: user_states(sim, n, rng), config.rnd_steps)
        a3c = train_actors(policy, sim, rng, config.a3c)
        policy.eval()
        seconds = time.perf_counter() - started

        evaluation = evaluate_fusion(
            policy,
            sim,
            n_requests=config.eval_requests,
            n_candidates=config.sim.candidates_per_request,
            stage_sizes=config.stage_sizes,
            k=config.k,
            seed=config.seed + 1,
        )
    window = max(1, len(a3c.rewards) // 10)
    report: dict[str, object] = {
        "trainer": "models.algorithms.demo_policy",
        "seed": config.seed,
        "seconds": round(seconds, 2),
        "torch": torch.__version__,
        "simulator": asdict(config.sim),
        "heads": {"steps": config.head_steps, "held_out_loss": [heads.held_out_before, heads.held_out_after]},
        "rnd": {"steps": config.rnd_steps, "loss": [rnd_losses[0], rnd_losses[-1]]},
        "a3c": {
            **asdict(config.a3c),
            "gamma": 0.0,
            "reward_first": float(np.mean(a3c.rewards[:window])),
            "reward_last": float(np.mean(a3c.rewards[-window:])),
        },
    }
    return DemoTraining(
        policy=policy,
        simulator=sim,
        report=report,
        evaluation={
            "expected_request_reward": evaluation,
            "requests": config.eval_requests,
            "candidates": config.sim.candidates_per_request,
        },
    )


def _train_session_demo(config: DemoConfig, started: float) -> DemoTraining:
    """Heads, RND, then the session A3C (γ = config.gamma) in simulator v2; evaluated on held-out users."""
    sim = demo_world(config)
    rng = np.random.default_rng([config.seed, 2])
    policy = CascadePolicy(replace(PolicyConfig.from_sim(config.sim), scale_free_powers=True))
    heads = train_heads(policy, sim, rng, steps=config.head_steps)
    rnd_losses = train_rnd(policy.rnd, lambda n: user_states(sim, n, rng), config.rnd_steps)
    run = config.session_run
    trained = _train_session_fusion(policy, sim, rng, config)
    policy.eval()
    seconds = time.perf_counter() - started
    fusion = policy.fusion
    n = fusion.action_dim // 2
    uniform = torch.cat([torch.ones(n), 0.5 * (fusion.low + fusion.high)[n:]])
    held_out = {"users": config.eval_users, "seed": 10_000 + config.seed}
    served = evaluate(policy, sim, run, users=config.eval_users, seed=10_000 + config.seed)
    baseline = evaluate(policy, sim, run, users=config.eval_users, seed=10_000 + config.seed, fusion_action=uniform)
    with torch.no_grad():
        states = user_states(sim, 512, np.random.default_rng([config.seed, 404]))
        action = fusion(states, torch.zeros(states.shape[0], fusion.action_dim)).action.numpy()
    shares = action[:, :n] / (action[:, :n].sum(1, keepdims=True) + 1e-12)
    names = list(config.sim.objectives)
    report: dict[str, object] = {
        "trainer": "models.algorithms.demo_policy",
        "world": config.world,
        "seed": config.seed,
        "seconds": round(seconds, 2),
        "torch": torch.__version__,
        "simulator": asdict(config.sim),
        "heads": {"steps": config.head_steps, "held_out_loss": [heads.held_out_before, heads.held_out_after]},
        "rnd": {"steps": config.rnd_steps, "loss": [rnd_losses[0], rnd_losses[-1]]},
        config.fusion_search: trained,
    }
    session_return = {"policy": served["return"], "uniform": baseline["return"]}
    session_depth = {"policy": served["depth"], "uniform": baseline["depth"]}
    if "warm_start" in trained:  # the search's best constant, on the same users: what the table must beat
        constant = torch.tensor(trained["warm_start"], dtype=torch.float32)
        best = evaluate(policy, sim, run, users=config.eval_users, seed=10_000 + config.seed, fusion_action=constant)
        session_return["best_constant"], session_depth["best_constant"] = best["return"], best["depth"]
    evaluation: dict[str, object] = {
        "session_return": session_return,
        "session_depth": session_depth,
        "held_out_users": held_out,
        # Σ_j w_j·log(p_j + b_j) ranks the same for any common scaling of w: the powers as shares of their sum.
        "power_shares": dict(zip(names, shares.mean(0).round(4).tolist(), strict=True)),
        "biases": dict(zip(names, action[:, n:].mean(0).round(4).tolist(), strict=True)),
    }
    return DemoTraining(policy=policy, simulator=sim, report=report, evaluation=evaluation)


def _train_session_fusion(
    policy: CascadePolicy, sim: Simulator, rng: np.random.Generator, config: DemoConfig
) -> dict[str, object]:
    """Train the fusion actor of a v2-world demo the way `config.fusion_search` says; what the manifest reports."""
    run = config.session_run
    if config.fusion_search == "contextual_cem":
        start, history = cem_session_action(policy, sim, rng, run, config.cem)
        return {
            "cem": asdict(config.cem),
            "objective": "session return (undiscounted sum over the session)",
            "warm_start_history": history,
            **fit_segment_table(policy, sim, rng, run, config.contextual, start),
        }
    log = train_a3c(policy, sim, rng, SessionA3CConfig(run=run, gamma=config.gamma))
    window = max(1, len(log.rewards) // 10)
    return {
        **asdict(run),
        "gamma": config.gamma,
        "reward_first": float(np.mean(log.rewards[:window])),
        "reward_last": float(np.mean(log.rewards[-window:])),
    }


def feature_schema(sim: SimConfig) -> FeatureSchema:
    return FeatureSchema(
        user_columns=sim.user_columns,
        context_columns=sim.context_columns,
        item_columns=sim.item_columns,
        objectives=list(sim.objectives),
    )


def bundle_description(policy: CascadePolicy, config: DemoConfig) -> tuple[FeatureSchema, list[Stage], FusionAction]:
    """Feature schema, stages and fusion action spec of a demo bundle, from the policy and the config."""
    stages = [Stage(name=name, keep=keep) for name, keep in zip(STAGES, config.stage_sizes, strict=True)]
    fusion = FusionAction(
        names=policy.config.action_names,
        low=policy.config.fusion_low,
        high=policy.config.fusion_high,
        exploration=Exploration(probability=config.exploration_probability, noise_clip=config.noise_clip),
    )
    return feature_schema(config.sim), stages, fusion
