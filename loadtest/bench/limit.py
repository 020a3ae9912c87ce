"""The compute limit: the cascade graph alone in onnxruntime, in this process, no HTTP, no decoding."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from export.store import active_version, bundle_path
from service.bundle import load_bundle
from service.cascade import CascadeInputs, run_cascade


def compute_p50_ms(store: Path, policy: str, bodies: list[dict[str, Any]], repeats: int, threads: int = 1) -> float:
    """Median time of one `run_cascade` over the bodies' tensors, with the session options a worker uses."""
    bundle = load_bundle(bundle_path(store, policy, active_version(store, policy)), threads)
    manifest = bundle.manifest
    inputs = [
        CascadeInputs(
            user=np.asarray([b["user"]["features"]], dtype=np.float32),
            context=np.asarray([b["context"]], dtype=np.float32),
            item_features=np.asarray(b["candidates"]["features"], dtype=np.float32),
            mtl_predictions=np.asarray(b["candidates"]["predictions"], dtype=np.float32),
            k=b["k"],
        )
        for b in bodies
    ]
    noise = np.zeros((1, manifest.fusion.dim), dtype=np.float32)
    for one in inputs:  # warm-up
        run_cascade(bundle.session, manifest, one, noise)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        run_cascade(bundle.session, manifest, inputs[i % len(inputs)], noise)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)
