"""The operator's cycle during a load test: canary the next version, promote, clear, roll back."""

from __future__ import annotations

from typing import Any

from loadtest.operator_cycle import CANARY_FRACTION, Operator


def models(active: str, on_disk: list[str]) -> dict[str, Any]:
    return {"policies": [{"policy": "demo", "active": active, "on_disk": on_disk}]}


def test_the_operator_canaries_promotes_clears_and_rolls_back_in_turn() -> None:
    operator = Operator("demo")
    listing = models("v1", ["v1", "v2"])

    steps = [operator.next_step(listing) for _ in range(4)]

    base = "/v1/admin/policies/demo"
    assert steps == [
        (f"{base}/canary", {"version": "v2", "fraction": CANARY_FRACTION}),
        (f"{base}/activate", {"version": "v2"}),
        (f"{base}/canary", {"version": None}),
        (f"{base}/rollback", {}),
    ]


def test_with_a_single_version_or_an_unknown_policy_the_operator_does_nothing() -> None:
    assert Operator("demo").next_step(models("v1", ["v1"])) is None
    assert Operator("other").next_step(models("v1", ["v1", "v2"])) is None
