"""Which bundle serves each policy. The one source of truth on disk is the store's ACTIVE pointer."""

from __future__ import annotations

from pathlib import Path

from export.store import StoreError, active_version, bundle_path
from service.bundle import BundleError, LoadedBundle, load_bundle


class Registry:
    """Loaded bundles by policy name. A failed load leaves whatever served before in place."""

    def __init__(self, store: Path, intra_op_threads: int = 1) -> None:
        self._store = store
        self._threads = intra_op_threads
        self._bundles: dict[str, LoadedBundle] = {}
        self._errors: dict[str, str] = {}

    def load_active(self, policy: str) -> LoadedBundle:
        """Load, verify and warm the policy's active version, then make it the one served."""
        try:
            version = active_version(self._store, policy)
            bundle = load_bundle(bundle_path(self._store, policy, version), self._threads)
        except (StoreError, BundleError) as exc:
            self._errors[policy] = str(exc)
            raise
        if bundle.manifest.policy != policy:
            message = f"bundle at {bundle.path} declares policy '{bundle.manifest.policy}', not '{policy}'"
            self._errors[policy] = message
            raise BundleError(message)
        self._bundles[policy] = bundle  # one reference assignment: requests see old or new, never a mix
        self._errors.pop(policy, None)
        return bundle

    def get(self, policy: str) -> LoadedBundle | None:
        """The bundle serving a policy, if one is loaded."""
        return self._bundles.get(policy)

    def error(self, policy: str) -> str | None:
        """Why the policy's last load failed, if it did."""
        return self._errors.get(policy)

    def policies(self) -> dict[str, str]:
        """Policy → version of everything loaded."""
        return {name: bundle.version for name, bundle in self._bundles.items()}
