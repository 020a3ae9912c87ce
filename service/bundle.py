"""Loading one model bundle: verify it whole, open its graphs in onnxruntime, choose its fusion, warm it up.

A bundle that fails any check is refused with a BundleError saying why; nothing half-loaded
is ever handed to the registry (DESIGN.md, "Model bundle"). A bundle of the old format (no fusion
graph) fails the manifest check with a message saying to re-export it: /v1/fusion is never served by
running the cascade on a made-up candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from contracts.manifest import (
    CASCADE_GRAPH,
    FUSION_GRAPH,
    GraphSpec,
    Manifest,
    cascade_graph_spec,
    fusion_graph_spec,
    sha256_of,
)
from contracts.store import StoreError, read_manifest
from service.actors import actor_specs, make_actors
from service.cascade import CascadeInputs, UserState, run_cascade, synthetic_inputs
from service.fusion_strategy import FusionStrategy, choose_fusion
from service.signing import SignatureError, Trust

_ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


class BundleError(Exception):
    """The bundle on disk cannot be served."""


@dataclass(frozen=True)
class LoadedBundle:
    """A verified bundle with its open onnxruntime sessions and the fusion strategy chosen for it."""

    path: Path
    manifest: Manifest
    session: ort.InferenceSession  # the cascade graph
    fusion: FusionStrategy  # Gaussian or ResAct (with per-item weights where shipped): chosen once, here

    @property
    def version(self) -> str:
        return self.manifest.version


def load_bundle(path: Path, intra_op_threads: int = 1, trust: Trust | None = None) -> LoadedBundle:
    """Verify the manifest's signature (with `trust`), every sha256 and the graph signature, then open and warm.

    The serving registry always passes its Trust; tools that only inspect a bundle they just exported
    (the CLI before publishing, benchmarks) may check hashes alone.
    """
    if trust is not None:
        try:
            trust.verify(path)  # before any hash is believed: the manifest is what lists them
        except SignatureError as exc:
            raise BundleError(f"{path}: signature refused: {exc}") from exc
    try:
        manifest = read_manifest(path)
    except (StoreError, ValidationError) as exc:
        raise BundleError(f"{path}: invalid manifest: {exc}") from exc
    _verify_hashes(path, manifest)
    session = _open(path / manifest.graphs[CASCADE_GRAPH].file, intra_op_threads)
    _verify_signature(session, cascade_graph_spec(manifest.feature_schema))
    fusion_session = _open(path / manifest.graphs[FUSION_GRAPH].file, intra_op_threads)
    _verify_signature(fusion_session, fusion_graph_spec(manifest.feature_schema))
    sessions = {}
    for name, spec in actor_specs(manifest).items():
        sessions[name] = _open(path / spec.file, intra_op_threads)
        _verify_signature(sessions[name], spec)
    unknown = set(manifest.actors) - set(sessions)
    if unknown:
        raise BundleError(f"{path}: this service does not know the actor graphs {sorted(unknown)}")
    try:
        actors = make_actors(manifest, sessions)
    except ValueError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    fusion = choose_fusion(manifest, session, fusion_session, actors)
    bundle = LoadedBundle(path=path, manifest=manifest, session=session, fusion=fusion)
    _warm_up(bundle)
    return bundle


def _open(graph_file: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(graph_file), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise BundleError(f"{graph_file}: onnxruntime cannot load it: {exc}") from exc


def _verify_hashes(path: Path, manifest: Manifest) -> None:
    on_disk = {p.name for p in path.iterdir() if p.is_file() and p.name != "manifest.json"}
    missing = set(manifest.files) - on_disk
    if missing:
        raise BundleError(f"{path}: files listed in the manifest are missing: {sorted(missing)}")
    for name, expected in manifest.files.items():
        actual = sha256_of(path / name)
        if actual != expected:
            raise BundleError(f"{path / name}: sha256 {actual} does not match the manifest's {expected}")


def _verify_signature(session: ort.InferenceSession, expected: GraphSpec) -> None:
    """The graph's real inputs and outputs must be exactly what the feature schema implies."""
    for kind, actual_args, specs in (
        ("input", session.get_inputs(), expected.inputs),
        ("output", session.get_outputs(), expected.outputs),
    ):
        actual = {a.name: a for a in actual_args}
        if set(actual) != {s.name for s in specs}:
            raise BundleError(f"graph {kind}s {sorted(actual)} differ from the contract's {[s.name for s in specs]}")
        for spec in specs:
            arg = actual[spec.name]
            if arg.type != _ORT_TYPES[spec.dtype]:
                raise BundleError(f"graph {kind} '{spec.name}' is {arg.type}, the contract says {spec.dtype}")
            if len(arg.shape) != len(spec.shape):
                raise BundleError(f"graph {kind} '{spec.name}' has rank {len(arg.shape)}, expected {len(spec.shape)}")
            for axis, (got, want) in enumerate(zip(arg.shape, spec.shape, strict=True)):
                # Fixed widths must match; dynamic axes (N, k) may carry any symbolic name.
                if isinstance(want, int) and isinstance(got, int) and got != want:
                    raise BundleError(
                        f"graph {kind} '{spec.name}' axis {axis} is {got} wide, the manifest's schema says {want}"
                    )


def _warm_up(bundle: LoadedBundle) -> None:
    """One inference per stage-size regime, so the first real request pays no allocation cost."""
    manifest = bundle.manifest
    noise = np.zeros((1, manifest.fusion.dim), dtype=np.float32)
    for n in sorted({1, *manifest.stage_sizes, 2 * max(manifest.stage_sizes)}):
        k = min(10, n)
        inputs = synthetic_inputs(manifest, n, k)
        try:
            outputs = run_cascade(bundle.session, manifest, inputs, noise)
        except Exception as exc:  # any failure here means the graph cannot serve
            raise BundleError(f"{bundle.path}: warm-up inference with {n} candidates failed: {exc}") from exc
        if outputs.top_indices.shape != (k,):
            raise BundleError(f"{bundle.path}: warm-up returned {outputs.top_indices.shape} items for k={k}")
        _warm_up_fusion(bundle, inputs)


def _warm_up_fusion(bundle: LoadedBundle, inputs: CascadeInputs) -> None:
    """Run the bundle's fusion strategy once on the cascade's warm-up inputs (rank, weights, per item)."""
    manifest, fusion = bundle.manifest, bundle.fusion
    n, dim = len(inputs.item_features), manifest.fusion.dim
    draws = fusion.quiet()
    try:
        ranked = fusion.rank(inputs, draws).outputs
        if ranked.top_indices.shape != (inputs.k,) or ranked.fusion_action.shape != (1, dim):
            raise ValueError(f"ranking returned {ranked.top_indices.shape} items for k={inputs.k}")
        weights = fusion.weights(UserState(inputs.user, inputs.context), draws).outputs
        if weights.fusion_action.shape != (1, dim) or weights.novelty.shape != (1,):
            raise ValueError(f"the fusion graph returned weights of shape {weights.fusion_action.shape}")
        if fusion.item_fusion is not None:
            noise = np.zeros((n, dim), dtype=np.float32)
            state = UserState(inputs.user, inputs.context)
            item = fusion.per_item(state, inputs.item_features, inputs.mtl_predictions, noise)
            if item.action.shape != (n, dim):
                raise ValueError(f"item_fusion returned actions of shape {item.action.shape}")
    except Exception as exc:  # any failure here means the bundle's fusion cannot serve
        raise BundleError(f"{bundle.path}: fusion warm-up with {n} candidates failed: {exc}") from exc
