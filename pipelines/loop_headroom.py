"""How much the loop could lift at all: the demo policy's fusion actor against what the same simulator allows
(`python -m pipelines.loop_headroom --seed 0 --world v2`).

All values are `pipelines.loop.simulated_value` (the loop's truth: 1,000 fixed requests of the loop's size,
stage actors at their mean), for the served mean and the exploring Gaussian:

- demo: the fusion actor the loop starts from;
- fusion trained on the truth: the same actor trained further by REINFORCE on the simulator's *expected*
  request reward (no sampling noise, fresh requests every step, stage actors frozen as in the loop). An
  upper reference no trainer that sees only feedback can beat;
- CEM constant: the best single fusion action for every request (cross-entropy method on the truth).
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from models.algorithms.demo_policy import train_demo_policy
from models.env.rollout import expected_reward, request_batch, served_items
from models.nets.cascade import CascadePolicy
from models.sim.simulator import Simulator
from pipelines.loop import LoopConfig, simulated_value, v2_loop_config


@dataclass(frozen=True)
class HeadroomConfig:
    seed: int = 0
    world: Literal["v1", "v2"] = "v1"  # the loop's world: `cascade loop --world`
    truth_steps: int = 600  # REINFORCE updates on the expected reward
    batch: int = 256
    actor_lr: float = 1e-3
    cem_iterations: int = 10
    cem_population: int = 32
    cem_elite: int = 6


def train_fusion_on_truth(
    policy: CascadePolicy, sim: Simulator, loop: LoopConfig, config: HeadroomConfig
) -> CascadePolicy:
    """A copy of `policy` whose fusion mean is trained on E[r | s, a] (baseline: the reward of the mean)."""
    trained = copy.deepcopy(policy)
    fusion = trained.fusion
    optimiser = torch.optim.Adam(fusion.net.parameters(), lr=config.actor_lr)
    rng = np.random.default_rng([config.seed, 31])
    sizes, k = torch.tensor(loop.demo.stage_sizes), torch.tensor([loop.k])
    scale: float | None = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        for _ in range(config.truth_steps):
            batch = request_batch(sim, config.batch, loop.n_candidates, rng)
            with torch.no_grad():
                selection = trained.select(batch.state, batch.items, sizes, k)
            step = fusion(batch.state, torch.randn(config.batch, fusion.action_dim).clamp(-2.0, 2.0))
            with torch.no_grad():
                reward = expected_reward(sim, batch, served_items(batch, selection, step.action, k))
                baseline = expected_reward(sim, batch, served_items(batch, selection, step.mean, k))
            advantage = torch.from_numpy(reward - baseline).float()
            scale = scale or float(advantage.std()) + 1e-8
            loss = -(step.log_prob * advantage / scale).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    trained.eval()
    return trained


@torch.no_grad()
def cem_constant_value(policy: CascadePolicy, sim: Simulator, loop: LoopConfig, config: HeadroomConfig) -> float:
    """simulated_value's requests served with the best constant fusion action CEM finds on fresh requests."""
    low, high = policy.fusion.low.numpy(), policy.fusion.high.numpy()
    mean, std = 0.5 * (low + high), 0.25 * (high - low)
    sizes, k = torch.tensor(loop.demo.stage_sizes), torch.tensor([loop.k])
    rng = np.random.default_rng([config.seed, 77])

    def value(action: np.ndarray, batch_rng: np.random.Generator, batch_size: int = 256) -> float:
        batch = request_batch(sim, batch_size, loop.n_candidates, batch_rng)  # the same requests for every action
        selection = policy.select(batch.state, batch.items, sizes, k)
        fixed = torch.from_numpy(action.astype(np.float32)).expand(batch_size, -1)
        return float(expected_reward(sim, batch, served_items(batch, selection, fixed, k)).mean())

    for iteration in range(config.cem_iterations):
        actions = np.clip(mean + std * rng.standard_normal((config.cem_population, mean.size)), low, high)
        scores = [value(a, np.random.default_rng([config.seed, 78, iteration])) for a in actions]
        elite = actions[np.argsort(scores)[-config.cem_elite :]]
        mean, std = elite.mean(0), elite.std(0) + 1e-3
    return value(mean, np.random.default_rng([loop.seed, 99]), 1000)  # simulated_value's requests


def headroom(config: HeadroomConfig) -> dict[str, dict[str, float]]:
    loop = v2_loop_config(config.seed) if config.world == "v2" else replace(LoopConfig(), seed=config.seed)
    demo = train_demo_policy(replace(loop.demo, seed=config.seed, exploration_probability=loop.exploration_probability))
    policy, sim = demo.policy, demo.simulator
    trained = train_fusion_on_truth(policy, sim, loop, config)
    return {
        "demo": simulated_value(policy, sim, loop),
        "fusion trained on the truth": simulated_value(trained, sim, loop),
        "CEM constant action": {"mean": cem_constant_value(policy, sim, loop, config)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--world", choices=("v1", "v2"), default="v1")
    parser.add_argument("--truth-steps", type=int, default=HeadroomConfig.truth_steps)
    args = parser.parse_args()
    values = headroom(HeadroomConfig(seed=args.seed, world=args.world, truth_steps=args.truth_steps))
    base = values["demo"]
    print(f"| seed {args.seed} | served mean | exploring Gaussian |")
    print("|---|---|---|")
    for name, value in values.items():
        cells = []
        for kind in ("mean", "gaussian"):
            if kind in value:
                cells.append(f"{value[kind]:.2f} ({100 * (value[kind] / base[kind] - 1):+.2f}%)")
            else:
                cells.append("–")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
