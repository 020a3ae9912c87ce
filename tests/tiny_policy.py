"""One tiny demo policy per test process, shared by tests/models and tests/export.

Cached here rather than in a session fixture of one conftest, so both test folders get the same trained
policy without training twice. Fewer steps than the demo, same code path.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from models.algorithms.a3c import A3CConfig
from models.algorithms.cem import SessionCEMConfig
from models.algorithms.contextual_cem import ContextualCEMConfig
from models.algorithms.demo_policy import DemoConfig, DemoTraining, session_demo_config, train_demo_policy

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


def tiny_contextual_config() -> DemoConfig:
    """`cascade demo --world v2.1` (contextual CEM on the session return) with searches of a few users."""
    base = session_demo_config(seed=0, world="v2.1")
    return replace(
        base,
        head_steps=3,
        rnd_steps=3,
        eval_users=16,
        eval_requests=8,
        session_run=replace(base.session_run, n_candidates=30, stage_sizes=(20, 15, 10)),
        cem=SessionCEMConfig(iterations=1, population=3, elite=2, users=8),
        contextual=ContextualCEMConfig(
            iterations=1, population=3, elite=2, users_per_segment=3, validation_users_per_segment=3
        ),
    )
