"""What each policy serves in this worker: an immutable snapshot, replaced by one assignment.

A change of routing loads every new version beside the old ones (verify, warm), and only when all
of them are ready swaps the snapshot (MLServer's load-before-unload). In-flight requests keep the
snapshot they started with, so no request ever mixes versions; a failed load keeps the old snapshot
serving and records why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from contracts.routing import RoutingState
from contracts.store import StoreError, active_version, bundle_path
from service.bundle import BundleError, LoadedBundle, load_bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Serving:
    """One policy's bundles at one routing revision."""

    revision: int
    active: LoadedBundle
    canary: LoadedBundle | None = None
    canary_fraction: float = 0.0
    shadow: LoadedBundle | None = None

    def versions(self) -> dict[str, str | float | None]:
        return {
            "active": self.active.version,
            "canary": self.canary.version if self.canary else None,
            "canary_fraction": self.canary_fraction if self.canary else 0.0,
            "shadow": self.shadow.version if self.shadow else None,
        }


class Registry:
    """Loaded bundles by policy; the swap point of hot reloads."""

    def __init__(self, store: Path, intra_op_threads: int = 1) -> None:
        self._store = store
        self._threads = intra_op_threads
        self._serving: dict[str, Serving] = {}
        self._loaded: dict[tuple[str, str], LoadedBundle] = {}
        self._errors: dict[str, str] = {}
        self.swaps = 0
        self.failed_swaps = 0

    @property
    def store(self) -> Path:
        return self._store

    def get(self, policy: str) -> Serving | None:
        """The policy's current snapshot, if any version is loaded."""
        return self._serving.get(policy)

    def error(self, policy: str) -> str | None:
        """Why the policy's last load failed, if it did."""
        return self._errors.get(policy)

    def mark_unavailable(self, policy: str, reason: str) -> None:
        """Record why a policy has nothing to serve (shown by /readyz) without touching what serves."""
        self._errors[policy] = reason

    def load(self, policy: str, version: str) -> LoadedBundle:
        """Verify and warm one version (reusing it if already loaded). Blocking: call from a thread."""
        cached = self._loaded.get((policy, version))
        if cached is not None:
            return cached
        bundle = load_bundle(bundle_path(self._store, policy, version), self._threads)
        if bundle.manifest.policy != policy or bundle.manifest.version != version:
            raise BundleError(f"bundle at {bundle.path} declares {bundle.manifest.policy}/{bundle.manifest.version}")
        return bundle

    def apply(self, policy: str, state: RoutingState) -> Serving:
        """Load what `state` names and swap to it; on failure keep serving the old snapshot and raise."""
        current = self._serving.get(policy)
        if current is not None and state.revision >= 0 and current.revision == state.revision:
            return current
        if state.active is None:
            raise StoreError(f"routing of policy '{policy}' names no active version")
        try:
            active = self.load(policy, state.active)
            canary = self.load(policy, state.canary) if state.canary and state.canary_fraction > 0 else None
            shadow = self.load(policy, state.shadow) if state.shadow else None
        except (StoreError, BundleError) as exc:
            self._errors[policy] = f"revision {state.revision}: {exc}"
            self.failed_swaps += 1
            log.error(
                "policy %s: routing revision %d refused, still serving the old one: %s",
                policy,
                state.revision,
                exc,
            )
            raise
        serving = Serving(state.revision, active, canary, state.canary_fraction, shadow)
        self._serving[policy] = serving  # the swap: one reference assignment
        self._errors.pop(policy, None)
        self.swaps += 1
        self._keep_loaded(policy, serving, state.previous)
        return serving

    def load_active(self, policy: str) -> Serving:
        """Serve the store's ACTIVE version (start-up without routing in Redis, and tools)."""
        try:
            version = active_version(self._store, policy)
        except StoreError as exc:
            self._errors[policy] = str(exc)
            raise
        return self.apply(policy, RoutingState(revision=-1, active=version))

    def _keep_loaded(self, policy: str, serving: Serving, previous: str | None) -> None:
        """Keep sessions of the versions in use (and the rollback target, if loaded); drop the rest."""
        keep = {b.version for b in (serving.active, serving.canary, serving.shadow) if b is not None}
        if previous:
            keep.add(previous)
        old = self._loaded
        self._loaded = {key: b for key, b in old.items() if key[0] != policy or key[1] in keep}
        for bundle in (serving.active, serving.canary, serving.shadow):
            if bundle is not None:
                self._loaded[(policy, bundle.version)] = bundle
