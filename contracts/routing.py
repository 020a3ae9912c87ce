"""The routing state of a policy: which version serves whom (the data; service/routing.py keeps it in Redis).

Per policy: the active version, the previous one (for rollback), an optional canary (version +
fraction of users, split by a stable hash of the user id) and an optional shadow version, plus a
revision counter that every change bumps. Redis holds the live copy; the store holds the durable one
(contracts/store.py, `ROUTING.json` beside the versions), which every change updates and from which
Redis is restored when it has lost its data, with a revision above any the durable copy recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

DEFAULT_NAMESPACE = "cascade"


def routing_channel(namespace: str) -> str:
    """Pub/sub channel on which every routing change is announced (the message is the policy name)."""
    return f"{namespace}:routing"


def routing_key(namespace: str, policy: str) -> str:
    return f"{namespace}:routing:{policy}"


def workers_key(namespace: str) -> str:
    """Hash of live workers: worker id → what it serves (JSON), refreshed every poll (admin `wait`)."""
    return f"{routing_channel(namespace)}:workers"


@dataclass(frozen=True)
class RoutingState:
    """One policy's routing at one revision."""

    revision: int = 0
    active: str | None = None
    previous: str | None = None
    canary: str | None = None
    canary_fraction: float = 0.0
    shadow: str | None = None

    @classmethod
    def from_hash(cls, fields: Mapping[Any, Any]) -> RoutingState:
        def text(name: str) -> str | None:
            value = fields.get(name.encode())
            return value.decode() if value else None

        return cls(
            revision=int(fields.get(b"revision", b"0")),
            active=text("active"),
            previous=text("previous"),
            canary=text("canary"),
            canary_fraction=float(fields.get(b"canary_fraction", b"0")),
            shadow=text("shadow"),
        )

    def serves(self) -> tuple[str | None, str | None, float, str | None]:
        """What a worker must load for this state: two states with the same value serve the same bundles."""
        fraction = self.canary_fraction if self.canary else 0.0
        return (self.active, self.canary if fraction > 0 else None, fraction, self.shadow)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "active": self.active,
            "previous": self.previous,
            "canary": self.canary,
            "canary_fraction": self.canary_fraction,
            "shadow": self.shadow,
        }

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> RoutingState:
        return cls(
            revision=int(fields.get("revision") or 0),
            active=fields.get("active") or None,
            previous=fields.get("previous") or None,
            canary=fields.get("canary") or None,
            canary_fraction=float(fields.get("canary_fraction") or 0.0),
            shadow=fields.get("shadow") or None,
        )

    def activated(self, version: str) -> RoutingState:
        """This state with `version` active and the one it replaces as the rollback target."""
        if version == self.active:
            return self
        return replace(self, revision=self.revision + 1, active=version, previous=self.active or self.previous)

    def versions_in_use(self) -> set[str]:
        """Versions that must stay on disk: serving, next in line for rollback, canary, shadow."""
        return {v for v in (self.active, self.previous, self.canary, self.shadow) if v}


def in_canary(policy: str, user_id: str, fraction: float) -> bool:
    """Stable split by a hash of the user id: a user stays in one arm while the fraction holds."""
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(f"{policy}\0{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < fraction
