"""Loading one model bundle: verify it whole, open its graph in onnxruntime, warm it up.

A bundle that fails any check is refused with a BundleError saying why; nothing half-loaded
is ever handed to the registry (DESIGN.md, "Model bundle").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from contracts.manifest import CASCADE_GRAPH, GraphSpec, Manifest, cascade_graph_spec, sha256_of
from contracts.store import StoreError, read_manifest
from service.actors import Actors, actor_specs, make_actors, rank_with_resact, run_item_fusion
from service.cascade import CascadeInputs, run_cascade, synthetic_inputs

_ORT_TYPES = {"float32": "tensor(float)", "int64": "tensor(int64)"}


class BundleError(Exception):
    """The bundle on disk cannot be served."""


@dataclass(frozen=True)
class LoadedBundle:
    """A verified bundle with its open onnxruntime session."""

    path: Path
    manifest: Manifest
    session: ort.InferenceSession
    actors: Actors = field(default_factory=Actors)  # the optional ResAct / per-item fusion graphs (manifest `actors`)

    @property
    def version(self) -> str:
        return self.manifest.version


def load_bundle(path: Path, intra_op_threads: int = 1) -> LoadedBundle:
    """Verify the manifest, every sha256 and the graph signature, then open and warm the graph."""
    try:
        manifest = read_manifest(path)
    except (StoreError, ValidationError) as exc:
        raise BundleError(f"{path}: invalid manifest: {exc}") from exc
    _verify_hashes(path, manifest)
    session = _open(path / manifest.graphs[CASCADE_GRAPH].file, intra_op_threads)
    _verify_signature(session, cascade_graph_spec(manifest.feature_schema))
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
    bundle = LoadedBundle(path=path, manifest=manifest, session=session, actors=actors)
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
        _warm_up_actors(bundle, inputs)


def _warm_up_actors(bundle: LoadedBundle, inputs: CascadeInputs) -> None:
    """Run each actor graph once on the cascade's warm-up inputs; refuse it if it fails."""
    manifest, actors = bundle.manifest, bundle.actors
    n = len(inputs.item_features)
    try:
        if actors.resact is not None:
            latents = np.zeros((1, actors.resact.n_draws, actors.resact.latent_dim), dtype=np.float32)
            decision, ranked = rank_with_resact(actors.resact, manifest, inputs, latents)
            if decision.action.shape != (1, manifest.fusion.dim):
                raise ValueError(f"resact returned an action of shape {decision.action.shape}")
            if ranked.top_indices.shape != (inputs.k,):
                raise ValueError(f"rank_by_action returned {ranked.top_indices.shape} items for k={inputs.k}")
        if actors.item_fusion is not None:
            noise = np.zeros((n, manifest.fusion.dim), dtype=np.float32)
            item = run_item_fusion(
                actors.item_fusion, inputs.user, inputs.context, inputs.item_features, inputs.mtl_predictions, noise
            )
            if item.action.shape != (n, manifest.fusion.dim):
                raise ValueError(f"item_fusion returned actions of shape {item.action.shape}")
    except Exception as exc:  # any failure here means the actor cannot serve
        raise BundleError(f"{bundle.path}: actor warm-up with {n} candidates failed: {exc}") from exc
