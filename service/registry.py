"""What each policy serves in this worker: an immutable snapshot, replaced by one assignment.

A change of routing loads every new version beside the old ones (verify, warm), and only when all
of them are ready swaps the snapshot (MLServer's load-before-unload). In-flight requests keep the
snapshot they started with, so no request ever mixes versions; a failed load keeps the old snapshot
serving and records why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from contracts.routing import RoutingState
from contracts.store import StoreError, bundle_path, read_routing
from service.bundle import BundleError, LoadedBundle, load_bundle
from service.metrics import Metrics
from service.signing import Trust, load_trust

# Verified bundles kept for a routing change not applied yet (admin verified, the watcher swaps next).
_STAGED = 4

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Serving:
    """One policy's bundles at one routing revision."""

    revision: int
    active: LoadedBundle
    canary: LoadedBundle | None = None
    canary_fraction: float = 0.0
    shadow: LoadedBundle | None = None
    routing: RoutingState = field(default_factory=RoutingState)

    def versions(self) -> dict[str, str | float | None]:
        return {
            "active": self.active.version,
            "canary": self.canary.version if self.canary else None,
            "canary_fraction": self.canary_fraction if self.canary else 0.0,
            "shadow": self.shadow.version if self.shadow else None,
        }


class Registry:
    """Loaded bundles by policy; the swap point of hot reloads."""

    def __init__(
        self, store: Path, intra_op_threads: int = 1, metrics: Metrics | None = None, trust: Trust | None = None
    ) -> None:
        self._store = store
        # Signatures are checked unless the caller says otherwise: by default with the store's demo key.
        self._trust = trust if trust is not None else load_trust(None, True, store)
        self._threads = intra_op_threads
        self._metrics = metrics
        self._serving: dict[str, Serving] = {}
        self._loaded: dict[tuple[str, str], LoadedBundle] = {}
        self._staged: dict[tuple[str, str], LoadedBundle] = {}
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
        key = (policy, version)
        cached = self._loaded.get(key) or self._staged.get(key)
        if cached is not None:
            return cached
        bundle = load_bundle(bundle_path(self._store, policy, version), self._threads, self._trust)
        if self._metrics is not None:
            self._metrics.bundle_loads.labels(policy).inc()
        if bundle.manifest.policy != policy or bundle.manifest.version != version:
            raise BundleError(f"bundle at {bundle.path} declares {bundle.manifest.policy}/{bundle.manifest.version}")
        # Dicts keep insertion order: the oldest staged bundle goes first (a plain dict swap, no lock).
        staged = {k: b for k, b in self._staged.items() if k != key}
        staged[key] = bundle
        self._staged = dict(list(staged.items())[-_STAGED:])
        return bundle

    def apply(self, policy: str, state: RoutingState) -> Serving:
        """Load what `state` names and swap to it; on failure keep serving the old snapshot and raise."""
        current = self._serving.get(policy)
        if current is not None and current.routing.serves() == state.serves():
            if current.revision != state.revision:
                current = Serving(
                    state.revision, current.active, current.canary, current.canary_fraction, current.shadow, state
                )
                self._serving[policy] = current
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
        serving = Serving(state.revision, active, canary, state.canary_fraction, shadow, state)
        self._serving[policy] = serving  # the swap: one reference assignment
        self._errors.pop(policy, None)
        self.swaps += 1
        self._keep_loaded(policy, serving, state.previous)
        return serving

    def load_active(self, policy: str) -> Serving:
        """Serve the store's durable routing (start-up while Redis is unreachable, and tools)."""
        state = read_routing(self._store / policy)
        if state.active is None:
            self._errors[policy] = f"policy '{policy}' has no active version in {self._store}"
            raise StoreError(self._errors[policy])
        return self.apply(policy, state)

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
        self._staged = {key: b for key, b in self._staged.items() if key not in self._loaded}
