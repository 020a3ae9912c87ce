"""The simulated world a store's served policy was trained in: where the load test draws its requests from.

Request widths (user, context and item features, objectives), item ids and viewers' rewards all come from
the world the active bundle names in its manifest (`training.world`, `seed`, `simulator`), so a load test
of a v1 demo sends v1 requests and one of a v2.1 demo sends v2.1 requests. Reads the manifest as JSON
(contracts/), never the checkpoint: a Locust worker stays free of torch.
"""

from __future__ import annotations

from pathlib import Path

from contracts.store import active_version, bundle_path, read_manifest
from models.sim.simulator import Simulator
from models.sim.world import trained_world

DEMO_POLICY = "demo"


def store_world(store: Path, policy: str = DEMO_POLICY) -> Simulator:
    """The world of `policy`'s active bundle in `store`; a ValueError naming the bundle if it names none."""
    bundle = bundle_path(store, policy, active_version(store, policy))
    try:
        return trained_world(read_manifest(bundle).training)[0]
    except ValueError as exc:
        raise ValueError(f"{bundle}: {exc}") from exc
