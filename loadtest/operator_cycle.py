"""What an operator does to a running service during a load test: canary, promote, roll back, repeat.

Pure decisions from `GET /v1/models` (no HTTP here; the Locust OperatorUser sends them), so the
cycle is testable without a server: canary the next version on disk to a share of users, promote it
(activate; the canary is cleared), then roll back to the version it replaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OPERATOR = "admin"  # prefix of the operator's Locust request names
CANARY_FRACTION = 0.2
STEPS = ("canary", "activate", "clear-canary", "rollback")

Step = tuple[str, dict[str, Any]]  # (path, JSON body)


@dataclass
class Operator:
    """The operator's place in its cycle, for one policy."""

    policy: str = "demo"
    position: int = 0
    target: str | None = None
    done: list[str] = field(default_factory=list)

    def next_step(self, models: dict[str, Any]) -> Step | None:
        """The next admin call given the service's model listing; None if there is nothing to swap to."""
        status = next((p for p in models.get("policies", []) if p.get("policy") == self.policy), None)
        if status is None:
            return None
        base = f"/v1/admin/policies/{self.policy}"
        step = STEPS[self.position % len(STEPS)]
        if step == "canary":
            others = sorted(v for v in status.get("on_disk", []) if v != status.get("active"))
            if not others:
                return None
            # Round-robin over the other versions, so a long run swaps between all of them.
            self.target = others[len(self.done) % len(others)]
            call: Step = (f"{base}/canary", {"version": self.target, "fraction": CANARY_FRACTION})
        elif step == "activate":
            call = (f"{base}/activate", {"version": self.target})
        elif step == "clear-canary":
            call = (f"{base}/canary", {"version": None})
        else:
            call = (f"{base}/rollback", {})
        self.position += 1
        self.done.append(step)
        return call
