"""Export the ResAct and EnhancedRL actors as extra graphs of a bundle: `resact.onnx` (seed 004) with
`rank_by_action.onnx` (the bundle's own cascade ranking with a given fusion action, so /v1/rank can serve
ResAct's action) and `item_fusion.onnx` (seed 003), each checked against its spec and against torch by
onnxruntime before the manifest names it.

Same conventions as export/exporter.py: the TorchScript-based exporter (dynamo=False), dynamic axes for
the draws (n_draws) and the candidates (N), a signature check, and a parity run whose result goes into the
manifest's optional `actors` section. The cascade graph and its contract are left as they are: the actor
graphs are added to an existing bundle (`add_actor_graphs`) and the manifest is rewritten with their files'
hashes. If an actor fails its checks, the bundle's manifest is left untouched.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from contracts.manifest import (
    ITEM_FUSION_GRAPH,
    ITEM_FUSION_INPUTS,
    ITEM_FUSION_OUTPUTS,
    MANIFEST_FILE,
    RANK_BY_ACTION_GRAPH,
    RANK_BY_ACTION_INPUTS,
    RANK_BY_ACTION_OUTPUTS,
    RESACT_GRAPH,
    RESACT_INPUTS,
    RESACT_OUTPUTS,
    ActorGraph,
    FeatureSchema,
    GraphSpec,
    Manifest,
    Parity,
    actor_graph_spec,
    sha256_of,
)
from contracts.signing import SIGNATURE_FILE
from export.exporter import (
    DEFAULT_TOLERANCE,
    ParityError,
    check_graph_signature,
    compare_outputs,
    example_inputs,
    parity_cases,
)
from models.algorithms.enhanced_rl import EnhancedActor
from models.algorithms.resact import ResActPolicy
from models.nets.cascade import CascadePolicy
from models.nets.checkpoint import load_checkpoint

RESACT_FILE = "resact.onnx"
RANK_BY_ACTION_FILE = "rank_by_action.onnx"
ITEM_FUSION_FILE = "item_fusion.onnx"
Spec = dict[str, tuple[str, tuple[str, ...]]]


class ResActGraph(nn.Module):
    """(user [1, U], context [1, C], latents [1, n, L]) → RESACT_OUTPUTS, in order."""

    def __init__(self, policy: ResActPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self, user: torch.Tensor, context: torch.Tensor, latents: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        action, candidates, q = self.policy(torch.cat([user, context], dim=-1), latents)
        return action, candidates, q, torch.argmax(q, dim=1)


class RankByActionGraph(nn.Module):
    """The cascade's stages, fused score and top-k with the fusion action given: RANK_BY_ACTION_INPUTS →
    RANK_BY_ACTION_OUTPUTS, CascadePolicy.rank, as CascadePolicy.forward runs it after its fusion actor."""

    def __init__(self, policy: CascadePolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self,
        user: torch.Tensor,
        context: torch.Tensor,
        item_features: torch.Tensor,
        mtl_predictions: torch.Tensor,
        stage_sizes: torch.Tensor,
        k: torch.Tensor,
        fusion_action: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        state = torch.cat([user, context], dim=-1)
        selection, top_rows, top_scores = self.policy.rank(
            state, item_features, mtl_predictions, stage_sizes, k, fusion_action
        )
        observations, actions = selection.observations[0], selection.actions[0]
        return top_rows[0], top_scores[0], observations, actions, selection.survivors, self.policy.rnd(state)


class ItemFusionGraph(nn.Module):
    """(user, context, item_features [N, I], mtl_predictions [N, J], item_noise [N, A]) → ITEM_FUSION_OUTPUTS."""

    std: torch.Tensor

    def __init__(self, actor: EnhancedActor, exploration_std: Sequence[float]) -> None:
        super().__init__()
        self.actor = actor
        self.register_buffer("std", torch.tensor(list(exploration_std), dtype=torch.float32))

    def forward(
        self,
        user: torch.Tensor,
        context: torch.Tensor,
        item_features: torch.Tensor,
        mtl_predictions: torch.Tensor,
        item_noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = torch.cat([user, context], dim=-1)
        mean = self.actor(state, item_features.unsqueeze(0), mtl_predictions.unsqueeze(0))[0]
        action = torch.minimum(torch.maximum(mean + self.std * item_noise, self.actor.low), self.actor.high)
        w, b = action.chunk(2, dim=-1)
        scores = (w * torch.log(mtl_predictions.clamp(min=0.0) + b)).sum(-1)
        return mean, action, scores


def resact_inputs(
    schema: FeatureSchema, latent_dim: int, n_draws: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random RESACT_INPUTS of one request with n_draws latent draws."""
    return {
        "user": rng.standard_normal((1, schema.user_dim)).astype(np.float32),
        "context": rng.standard_normal((1, schema.context_dim)).astype(np.float32),
        "latents": rng.standard_normal((1, n_draws, latent_dim)).astype(np.float32),
    }


def rank_by_action_inputs(
    manifest: Manifest, n_candidates: int, k: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random RANK_BY_ACTION_INPUTS of one request: the cascade's example inputs, an action within the bounds."""
    cascade = example_inputs(manifest.feature_schema, n_candidates, manifest.stage_sizes, k, rng)
    low, high = np.asarray(manifest.fusion.low), np.asarray(manifest.fusion.high)
    action = rng.uniform(low, high, (1, manifest.fusion.dim)).astype(np.float32)
    return {**{name: cascade[name] for name in RANK_BY_ACTION_INPUTS if name in cascade}, "fusion_action": action}


def item_fusion_inputs(schema: FeatureSchema, n_candidates: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random ITEM_FUSION_INPUTS of one request with N candidates (a few slightly negative predictions)."""
    n_objectives = len(schema.objectives)
    return {
        "user": rng.standard_normal((1, schema.user_dim)).astype(np.float32),
        "context": rng.standard_normal((1, schema.context_dim)).astype(np.float32),
        "item_features": rng.standard_normal((n_candidates, schema.item_dim)).astype(np.float32),
        "mtl_predictions": rng.uniform(-0.05, 2.0, (n_candidates, n_objectives)).astype(np.float32),
        "item_noise": rng.standard_normal((n_candidates, 2 * n_objectives)).astype(np.float32),
    }


def _export(
    module: nn.Module, example: dict[str, np.ndarray], path: Path, outputs: Spec, axes: dict[str, dict[int, str]]
) -> None:
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings; parity decides
        torch.onnx.export(
            module,
            tuple(torch.from_numpy(v) for v in example.values()),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=list(example),
            output_names=list(outputs),
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def _parity(
    module: nn.Module, path: Path, cases: list[dict[str, np.ndarray]], outputs: Spec, tolerance: float
) -> float:
    """Max abs error of float outputs over the cases; int outputs must be equal. Raises ParityError."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    max_error = 0.0
    for inputs in cases:
        with torch.no_grad():
            expected = [t.numpy() for t in module(*(torch.from_numpy(v) for v in inputs.values()))]
        try:
            got = session.run(list(outputs), inputs)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ParityError(
                f"onnxruntime failed on {path.name} with shapes {[v.shape for v in inputs.values()]}: {exc}"
            ) from exc
        max_error = max(max_error, compare_outputs(outputs, expected, got, tolerance))
    return max_error


def export_resact(
    policy: ResActPolicy, folder: Path, schema: FeatureSchema, n_draws: int, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[GraphSpec, ActorGraph]:
    """Write `resact.onnx` to `folder`, check its signature and parity for 1, 2, n and n + 5 draws."""
    graph = ResActGraph(policy)
    latent_dim = policy.cvae.latent_dim
    rng = np.random.default_rng(0)
    path = folder / RESACT_FILE
    axes = {"latents": {1: "n_draws"}, "resact_candidates": {1: "n_draws"}, "resact_q": {1: "n_draws"}}
    _export(graph, resact_inputs(schema, latent_dim, n_draws, rng), path, RESACT_OUTPUTS, axes)
    spec = actor_graph_spec(RESACT_INPUTS, RESACT_OUTPUTS, schema, RESACT_FILE, latent_dim=latent_dim)
    check_graph_signature(path, spec)
    counts = sorted({1, 2, n_draws, n_draws + 5})
    error = _parity(graph, path, [resact_inputs(schema, latent_dim, n, rng) for n in counts], RESACT_OUTPUTS, tolerance)
    parity = Parity(max_abs_error=error, tolerance=tolerance, candidate_counts=counts, passed=True)
    return spec, ActorGraph(graph=RESACT_GRAPH, parity=parity, latent_dim=latent_dim, n_draws=n_draws)


def export_rank_by_action(
    policy: CascadePolicy, folder: Path, manifest: Manifest, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[GraphSpec, ActorGraph]:
    """Write `rank_by_action.onnx` from the bundle's own cascade policy; check it over the cascade's (N, k)
    parity cases, N below, at and above every stage size."""
    graph = RankByActionGraph(policy)
    rng = np.random.default_rng(0)
    path = folder / RANK_BY_ACTION_FILE
    axes = {"item_features": {0: "N"}, "mtl_predictions": {0: "N"}, "top_indices": {0: "k"}, "top_scores": {0: "k"}}
    example = rank_by_action_inputs(manifest, max(manifest.stage_sizes) + 1, 10, rng)
    _export(graph, example, path, RANK_BY_ACTION_OUTPUTS, axes)
    spec = actor_graph_spec(RANK_BY_ACTION_INPUTS, RANK_BY_ACTION_OUTPUTS, manifest.feature_schema, RANK_BY_ACTION_FILE)
    check_graph_signature(path, spec)
    cases = parity_cases(manifest.stage_sizes, default_k=10)
    inputs = [rank_by_action_inputs(manifest, n, k, rng) for n, k in cases]
    error = _parity(graph, path, inputs, RANK_BY_ACTION_OUTPUTS, tolerance)
    counts = sorted({n for n, _ in cases})
    parity = Parity(max_abs_error=error, tolerance=tolerance, candidate_counts=counts, passed=True)
    return spec, ActorGraph(graph=RANK_BY_ACTION_GRAPH, parity=parity)


def export_item_fusion(
    actor: EnhancedActor,
    folder: Path,
    schema: FeatureSchema,
    exploration_std: Sequence[float],
    candidate_counts: Sequence[int] = (1, 2, 10, 50, 51, 300),
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[GraphSpec, ActorGraph]:
    """Write `item_fusion.onnx` to `folder`, check its signature and parity over `candidate_counts`."""
    graph = ItemFusionGraph(actor, exploration_std)
    rng = np.random.default_rng(0)
    path = folder / ITEM_FUSION_FILE
    axes = {name: {0: "N"} for name in ("item_features", "mtl_predictions", "item_noise", *ITEM_FUSION_OUTPUTS)}
    _export(graph, item_fusion_inputs(schema, 51, rng), path, ITEM_FUSION_OUTPUTS, axes)
    spec = actor_graph_spec(ITEM_FUSION_INPUTS, ITEM_FUSION_OUTPUTS, schema, ITEM_FUSION_FILE)
    check_graph_signature(path, spec)
    cases = [item_fusion_inputs(schema, n, rng) for n in candidate_counts]
    cases[0]["item_noise"] = np.zeros_like(cases[0]["item_noise"])  # the mean, as served without exploring
    error = _parity(graph, path, cases, ITEM_FUSION_OUTPUTS, tolerance)
    parity = Parity(max_abs_error=error, tolerance=tolerance, candidate_counts=sorted(candidate_counts), passed=True)
    return spec, ActorGraph(graph=ITEM_FUSION_GRAPH, parity=parity, exploration_std=[float(s) for s in exploration_std])


def add_actor_graphs(
    bundle: Path,
    *,
    resact: ResActPolicy | None = None,
    n_draws: int = 10,
    item_fusion: EnhancedActor | None = None,
    exploration_std: Sequence[float] | None = None,
) -> Manifest:
    """Add the given actors' graphs to an exported bundle and rewrite its manifest (graphs, files, actors)."""
    manifest = Manifest.model_validate_json((bundle / MANIFEST_FILE).read_text())
    graphs, actors = dict(manifest.graphs), dict(manifest.actors)
    schema = manifest.feature_schema
    if resact is not None:
        graphs[RESACT_GRAPH], actors[RESACT_GRAPH] = export_resact(resact, bundle, schema, n_draws)
        # /v1/rank ranks with ResAct's action through the bundle's own stages (its checkpoint, hash-checked).
        cascade = load_checkpoint(bundle, manifest)
        graphs[RANK_BY_ACTION_GRAPH], actors[RANK_BY_ACTION_GRAPH] = export_rank_by_action(cascade, bundle, manifest)
    if item_fusion is not None:
        std = list(exploration_std) if exploration_std is not None else [0.0] * manifest.fusion.dim
        graphs[ITEM_FUSION_GRAPH], actors[ITEM_FUSION_GRAPH] = export_item_fusion(item_fusion, bundle, schema, std)
    # The signature is over the manifest, so it cannot be listed in it (contracts/signing.py).
    files = {
        p.name: sha256_of(p)
        for p in sorted(bundle.iterdir())
        if p.is_file() and p.name not in (MANIFEST_FILE, SIGNATURE_FILE)
    }
    updated = Manifest.model_validate({**manifest.model_dump(), "graphs": graphs, "files": files, "actors": actors})
    tmp = (bundle / MANIFEST_FILE).with_suffix(".tmp")
    tmp.write_text(updated.model_dump_json(indent=2) + "\n")
    tmp.replace(bundle / MANIFEST_FILE)
    return updated
