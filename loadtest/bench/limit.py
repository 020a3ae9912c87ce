"""The compute limit: the cascade graph alone in onnxruntime, in this process, no HTTP, no decoding."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from contracts.manifest import Manifest
from contracts.store import active_version, bundle_path
from service.bundle import load_bundle
from service.cascade import CascadeInputs, run_cascade

OPTIMIZATION_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def compute_p50_ms(store: Path, policy: str, bodies: list[dict[str, Any]], repeats: int, threads: int = 1) -> float:
    """Median time of one `run_cascade` over the bodies' tensors, with the session options a worker uses."""
    bundle = load_bundle(bundle_path(store, policy, active_version(store, policy)), threads)
    return _p50_ms(bundle.session, bundle.manifest, bodies, repeats)


def session_option_sweep(
    store: Path, policy: str, bodies: list[dict[str, Any]], repeats: int
) -> list[tuple[int, str, float]]:
    """(intra-op threads, graph optimisation level, p50 ms) for the options a worker could choose."""
    bundle = load_bundle(bundle_path(store, policy, active_version(store, policy)))
    graph = bundle.path / bundle.manifest.graphs["cascade"].file
    out = []
    for threads in (1, 2):
        for name, level in OPTIMIZATION_LEVELS.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = level
            session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
            out.append((threads, name, _p50_ms(session, bundle.manifest, bodies, repeats)))
    return out


def _p50_ms(session: ort.InferenceSession, manifest: Manifest, bodies: list[dict[str, Any]], repeats: int) -> float:
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
        run_cascade(session, manifest, one, noise)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        run_cascade(session, manifest, inputs[i % len(inputs)], noise)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def by_id_p50_ms(store: Path, policy: str, bodies: list[dict[str, Any]], repeats: int) -> float:
    """Median of what a by-id request costs at least: id lookup, row gather and one `run_cascade`, no HTTP."""
    from contracts.item_table import active_items_version, load_item_table
    from service.item_catalog import rows_of, table_matrices

    bundle = load_bundle(bundle_path(store, policy, active_version(store, policy)), 1)
    version = active_items_version(store)
    if version is None:
        raise ValueError(f"{store} has no item table")
    table = load_item_table(store, version)
    noise = np.zeros((1, bundle.manifest.fusion.dim), dtype=np.float32)

    def once(body: dict[str, Any]) -> None:
        features, predictions = table_matrices(table, rows_of(table, body["candidates"]["ids"]))
        inputs = CascadeInputs(
            user=np.asarray([body["user"]["features"]], dtype=np.float32),
            context=np.asarray([body["context"]], dtype=np.float32),
            item_features=features,
            mtl_predictions=predictions,
            k=body["k"],
        )
        run_cascade(bundle.session, bundle.manifest, inputs, noise)

    for body in bodies:  # warm-up
        once(body)
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        once(bodies[i % len(bodies)])
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)
