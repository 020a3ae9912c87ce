"""One tiny demo policy per test process, shared by tests/models and tests/export.

Cached here rather than in a session fixture of one conftest, so both test folders get the same trained
policy without training twice. Fewer steps than the demo, same code path.
"""

from __future__ import annotations

from functools import cache

from models.algorithms.a3c import A3CConfig
from models.algorithms.demo_policy import DemoConfig, DemoTraining, train_demo_policy

TINY = DemoConfig(
    seed=0,
    head_steps=300,
    rnd_steps=150,
    a3c=A3CConfig(steps=150, actor_lr=1e-2),
    eval_requests=50,
)


@cache
def tiny_training() -> DemoTraining:
    return train_demo_policy(TINY)
