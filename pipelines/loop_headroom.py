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
from pathlib import Path

import numpy as np
import torch

from models.algorithms.demo_policy import train_demo_policy
from models.env.rollout import expected_reward, request_batch, served_items
from models.nets.cascade import CascadePolicy
from models.reports.sections import update_section
from models.reports.stats import Paired, format_seeds, parse_seeds
from models.sim.simulator import Simulator
from models.sim.world import WorldName
from pipelines.loop import LoopConfig, simulated_value, v2_loop_config


@dataclass(frozen=True)
class HeadroomConfig:
    seed: int = 0
    world: WorldName = "v1"  # the loop's world: `cascade loop --world`
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
    loop = (
        replace(LoopConfig(), seed=config.seed) if config.world == "v1" else v2_loop_config(config.seed, config.world)
    )
    demo = train_demo_policy(replace(loop.demo, seed=config.seed, exploration_probability=loop.exploration_probability))
    policy, sim = demo.policy, demo.simulator
    trained = train_fusion_on_truth(policy, sim, loop, config)
    return {
        "demo": simulated_value(policy, sim, loop),
        "fusion trained on the truth": simulated_value(trained, sim, loop),
        "CEM constant action": {"mean": cem_constant_value(policy, sim, loop, config)},
    }


def render(world: str, seeds: tuple[int, ...], values: dict[int, dict[str, dict[str, float]]], command: str) -> str:
    """The RESULTS.md section: per seed the three values, then the paired gains over the demo with intervals
    (the text is made from these numbers)."""
    lines = [
        f"## How much the loop could lift: the demo against what its world allows (simulator {world})",
        "",
        f"`{command}` (pipelines/loop_headroom.py), world {world}, seeds {format_seeds(seeds)}: the loop's truth "
        "(`pipelines.loop.simulated_value`: the expected reward per request on 1,000 fixed requests of the "
        "loop's size, stage actors at their mean) for the demo the loop starts from, the same fusion actor "
        "trained further on the simulator's expected reward (no sampling noise: an upper reference for a "
        "trainer that sees only feedback), and the best constant fusion action (CEM on the truth).",
        "",
        "| seed | demo, served mean | trained on the truth | best constant | demo, exploring "
        "| trained on the truth, exploring |",
        "|---|---|---|---|---|---|",
    ]
    for seed in seeds:
        v = values[seed]
        demo, truth, cem = v["demo"], v["fusion trained on the truth"], v["CEM constant action"]
        lines.append(
            f"| {seed} | {demo['mean']:.3f} | {truth['mean']:.3f} ({100 * (truth['mean'] / demo['mean'] - 1):+.2f}%) "
            f"| {cem['mean']:.3f} ({100 * (cem['mean'] / demo['mean'] - 1):+.2f}%) | {demo['gaussian']:.3f} "
            f"| {truth['gaussian']:.3f} ({100 * (truth['gaussian'] / demo['gaussian'] - 1):+.2f}%) |"
        )
    demo_mean = np.array([values[s]["demo"]["mean"] for s in seeds])
    lines.append("")
    for name, label in (
        ("fusion trained on the truth", "trained on the truth"),
        ("CEM constant action", "best constant"),
    ):
        paired = Paired(np.array([values[s][name]["mean"] for s in seeds]), demo_mean)
        lo, hi = paired.interval
        lines.append(
            f"- {label} − demo (served mean): {paired.mean:+.3f} ({100 * paired.relative:+.2f}%; 95 % CI "
            f"[{lo:+.3f}, {hi:+.3f}], {paired.wins}/{paired.n} seeds higher)."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="e.g. 0-3 (the loop's seeds)")
    parser.add_argument("--world", choices=("v1", "v2", "v2.1"), default="v1")
    parser.add_argument("--truth-steps", type=int, default=HeadroomConfig.truth_steps)
    parser.add_argument("--results", type=Path, default=None, help="also write the section into this RESULTS.md")
    parser.add_argument(
        "--section", default="loop:headroom", help="its key in RESULTS.md: one per world, e.g. loop:headroom_v21"
    )
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    values = {}
    for seed in seeds:
        values[seed] = headroom(HeadroomConfig(seed=seed, world=args.world, truth_steps=args.truth_steps))
        print(f"seed {seed}: " + ", ".join(f"{name} {v['mean']:.3f}" for name, v in values[seed].items()), flush=True)
    command = f"python -m pipelines.loop_headroom --seeds {format_seeds(seeds)} --world {args.world}"
    if args.section != "loop:headroom":
        command += f" --section {args.section}"
    section = render(args.world, seeds, values, command)
    print(section)
    if args.results is not None:
        update_section(args.results, args.section, section)


if __name__ == "__main__":
    main()
