"""The routing state of a policy: which version serves whom (the data; service/routing.py keeps it in Redis).

Per policy: the active version, the previous one (for rollback), an optional canary (version +
fraction of users, split by a stable hash of the user id) and an optional shadow version, plus a
revision counter that every change bumps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_NAMESPACE = "cascade"


def routing_channel(namespace: str) -> str:
    """Pub/sub channel on which every routing change is announced (the message is the policy name)."""
    return f"{namespace}:routing"


def routing_key(namespace: str, policy: str) -> str:
    return f"{namespace}:routing:{policy}"


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

    def versions_in_use(self) -> set[str]:
        """Versions that must stay on disk: serving, next in line for rollback, canary, shadow."""
        return {v for v in (self.active, self.previous, self.canary, self.shadow) if v}


def in_canary(policy: str, user_id: str, fraction: float) -> bool:
    """Stable split by a hash of the user id: a user stays in one arm while the fraction holds."""
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(f"{policy}\0{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < fraction
