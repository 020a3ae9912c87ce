"""The cascade runtime: numpy in, numpy out, one onnxruntime call per request.

Knows nothing of HTTP. The cascade graph (contracts/manifest.py, CASCADE_INPUTS/OUTPUTS) runs
matching → pre-ranking → ranking and the fusion actor; the fusion graph (FUSION_INPUTS/OUTPUTS) runs
the fusion actor and RND alone. This module only prepares their feeds and names their outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from contracts.manifest import CASCADE_OUTPUTS, FUSION_OUTPUTS, Manifest

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class UserState:
    """The request-level state alone (a fusion call without candidates), validated against the schema."""

    user: F32  # [1, user_dim]
    context: F32  # [1, context_dim]


@dataclass(frozen=True)
class CascadeInputs:
    """One request's tensors, already validated against the manifest's feature schema."""

    user: F32  # [1, user_dim]
    context: F32  # [1, context_dim]
    item_features: F32  # [N, item_dim]
    mtl_predictions: F32  # [N, objectives]
    k: int
    # Row of each candidate in the item table when its rows were looked up there (the decision record
    # logs these instead of the ids); None when the body carried every matrix.
    table_rows: npt.NDArray[np.intp] | None = None


@dataclass(frozen=True)
class CascadeOutputs:
    """The graph's outputs, by name (see CASCADE_OUTPUTS)."""

    top_indices: I64
    top_scores: F32
    stage_observations: F32
    stage_actions: F32
    stage_survivors: I64
    fusion_mean: F32
    fusion_std: F32
    fusion_raw_action: F32
    fusion_action: F32
    log_prob: F32
    novelty: F32


_OUTPUT_NAMES = list(CASCADE_OUTPUTS)
assert list(CascadeOutputs.__dataclass_fields__) == _OUTPUT_NAMES, "CascadeOutputs must mirror the contract"


@dataclass(frozen=True)
class FusionOutputs:
    """The fusion graph's outputs, by name (see FUSION_OUTPUTS): the fusion fields of CascadeOutputs."""

    fusion_mean: F32
    fusion_std: F32
    fusion_raw_action: F32
    fusion_action: F32
    log_prob: F32
    novelty: F32


_FUSION_NAMES = list(FUSION_OUTPUTS)
assert list(FusionOutputs.__dataclass_fields__) == _FUSION_NAMES, "FusionOutputs must mirror the contract"


def run_fusion(session: ort.InferenceSession, state: UserState, noise: F32) -> FusionOutputs:
    """The fusion actor and RND novelty for one user state; `noise` is the actor's [1, A] latent draw."""
    values = session.run(_FUSION_NAMES, {"user": state.user, "context": state.context, "fusion_noise": noise})
    return FusionOutputs(*values)


def run_cascade(session: ort.InferenceSession, manifest: Manifest, inputs: CascadeInputs, noise: F32) -> CascadeOutputs:
    """Run the whole cascade for one request; `noise` is the fusion actor's [1, A] latent draw."""
    values = session.run(_OUTPUT_NAMES, {**request_feeds(manifest, inputs), "fusion_noise": noise})
    return CascadeOutputs(*values)


def request_feeds(manifest: Manifest, inputs: CascadeInputs) -> dict[str, np.ndarray]:
    """The feeds every cascade-shaped graph takes (cascade, rank_by_action): the request and the manifest's sizes."""
    return {
        "user": inputs.user,
        "context": inputs.context,
        "item_features": inputs.item_features,
        "mtl_predictions": inputs.mtl_predictions,
        "stage_sizes": np.asarray(manifest.stage_sizes, dtype=np.int64),
        "k": np.asarray([inputs.k], dtype=np.int64),
    }


def synthetic_inputs(manifest: Manifest, n: int, k: int, seed: int = 0) -> CascadeInputs:
    """Random but well-formed inputs of N candidates: for warm-up and self-checks, not for serving."""
    schema = manifest.feature_schema
    rng = np.random.default_rng(seed)
    return CascadeInputs(
        user=rng.standard_normal((1, schema.user_dim), dtype=np.float32),
        context=np.zeros((1, schema.context_dim), dtype=np.float32),
        item_features=rng.standard_normal((n, schema.item_dim), dtype=np.float32),
        mtl_predictions=rng.random((n, len(schema.objectives)), dtype=np.float32),
        k=k,
    )
