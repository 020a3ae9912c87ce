"""The model bundle contract: what `manifest.json` holds (DESIGN.md, "Model bundle").

A bundle is one version of one policy: its ONNX graphs plus this manifest. The exporter
writes it, the service reads and verifies it. Neither re-declares these fields: both import
this module.

The single graph `cascade.onnx` runs the whole request (see `CASCADE_INPUTS` /
`CASCADE_OUTPUTS`): matching → pre-ranking → ranking stage actors with their selection
functions, then the Gaussian fusion-weight actor and the power/bias fused score over the
ranking survivors, top-k, and the RND novelty of the user state. One onnxruntime call per
request; stage sizes and k are graph inputs so the manifest, not the code, sets them.

Beside it, `fusion.onnx` (`FUSION_INPUTS` / `FUSION_OUTPUTS`) runs the fusion actor and the RND novelty
alone, from the user state: /v1/fusion is one call of it, with no candidates. Format 2 bundles must ship
it; a format 1 bundle (cascade graph only) is refused with a message saying to re-export it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.versions import POLICY_PATTERN, VERSION_PATTERN

# 2: every bundle ships the fusion graph (FUSION_GRAPH) beside the cascade graph.
FORMAT_VERSION: Final = 2
MANIFEST_FILE = "manifest.json"
CASCADE_GRAPH = "cascade"
FUSION_GRAPH = "fusion"

# Graph signature of the cascade graph. N is the dynamic candidate axis; A is the fusion
# action width (2 × objectives: a power w_j and a bias b_j per objective).
CASCADE_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "user": ("float32", ("1", "user_dim")),
    "context": ("float32", ("1", "context_dim")),
    "item_features": ("float32", ("N", "item_dim")),
    "mtl_predictions": ("float32", ("N", "objectives")),
    # Standard-normal draws for the fusion actor's exploration; zeros mean "serve the mean".
    # An input (not sampled in-graph) so the service logs them and any decision replays exactly.
    "fusion_noise": ("float32", ("1", "A")),
    # Kept per stage (matching, pre_ranking, ranking); each stage keeps min(n_in, max(size, k)).
    "stage_sizes": ("int64", ("3",)),
    "k": ("int64", ("1",)),
}
CASCADE_OUTPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "top_indices": ("int64", ("k",)),  # rows of the request's candidates, best first
    "top_scores": ("float32", ("k",)),  # fused score Σ_j w_j·log(p_j + b_j), descending
    "stage_observations": ("float32", ("3", "obs_dim")),  # what each stage actor saw
    "stage_actions": ("float32", ("3", "objectives")),  # each stage actor's head weights
    "stage_survivors": ("int64", ("3",)),  # how many candidates each stage kept
    "fusion_mean": ("float32", ("1", "A")),
    "fusion_std": ("float32", ("1", "A")),
    "fusion_raw_action": ("float32", ("1", "A")),  # mean + std·noise, before clipping
    "fusion_action": ("float32", ("1", "A")),  # clipped to [low, high]: the weights served
    "log_prob": ("float32", ("1",)),  # log π(raw action | state), the logged propensity
    "novelty": ("float32", ("1",)),  # RND bonus ||f(s) − f*(s)||² of the fusion state
}

# Graph signature of the fusion graph: the cascade graph's fusion actor (Kuaishou request-level MDP: one
# Gaussian weight vector from the user state) and RND novelty on their own, the same inputs and the same
# semantics as those outputs of the cascade graph, from the same torch modules. No candidates.
FUSION_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: CASCADE_INPUTS[name] for name in ("user", "context", "fusion_noise")
}
FUSION_OUTPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: CASCADE_OUTPUTS[name]
    for name in ("fusion_mean", "fusion_std", "fusion_raw_action", "fusion_action", "log_prob", "novelty")
}


# Optional actor graphs (ResAct, seed 004; EnhancedRL, seed 003), shipped beside the cascade graph in the
# same bundle (the cascade contract above is unchanged). "resact" (seed 004): the CVAE decoder turns n
# latent draws into n candidate fusion actions, the residual network improves each, Q1 scores each, the
# best is served. The draws are an input so the service logs them and a decision replays exactly.
# n_draws is dynamic.
RESACT_GRAPH = "resact"
RESACT_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "user": ("float32", ("1", "user_dim")),
    "context": ("float32", ("1", "context_dim")),
    "latents": ("float32", ("1", "n_draws", "latent_dim")),  # standard-normal draws c^i
}
RESACT_OUTPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "resact_action": ("float32", ("1", "A")),  # the served fusion action (within the bounds)
    "resact_candidates": ("float32", ("1", "n_draws", "A")),  # the n improved actions
    "resact_q": ("float32", ("1", "n_draws")),  # Q1 of each candidate
    "resact_choice": ("int64", ("1",)),  # argmax of resact_q: which draw was served
}
# "rank_by_action": the cascade with the fusion action as an input instead of the Gaussian actor's noise.
# It ships with a ResAct actor so /v1/rank serves ResAct's action (resact graph → this graph): the same
# stages, fused score and top-k as the cascade graph. Replay: latents → resact_action → this graph.
RANK_BY_ACTION_GRAPH = "rank_by_action"
RANK_BY_ACTION_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    **{name: spec for name, spec in CASCADE_INPUTS.items() if name != "fusion_noise"},
    "fusion_action": ("float32", ("1", "A")),  # the weights to rank with (within the manifest's bounds)
}
RANK_BY_ACTION_OUTPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    name: CASCADE_OUTPUTS[name]
    for name in ("top_indices", "top_scores", "stage_observations", "stage_actions", "stage_survivors", "novelty")
}
# "item_fusion" (seed 003, EnhancedRL): one fusion action per candidate from user ⊕ context ⊕ item ⊕ its
# predictions, and each candidate's fused score, in one call over the N candidates.
ITEM_FUSION_GRAPH = "item_fusion"
ITEM_FUSION_INPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "user": ("float32", ("1", "user_dim")),
    "context": ("float32", ("1", "context_dim")),
    "item_features": ("float32", ("N", "item_dim")),
    "mtl_predictions": ("float32", ("N", "objectives")),
    "item_noise": ("float32", ("N", "A")),  # standard-normal draws per candidate; zeros serve the mean
}
ITEM_FUSION_OUTPUTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "item_fusion_mean": ("float32", ("N", "A")),
    "item_fusion_action": ("float32", ("N", "A")),  # clip(mean + exploration_std·noise, low, high)
    "item_scores": ("float32", ("N",)),  # Σ_j w_ij·log(max(p_ij, 0) + b_ij) per candidate
}


class FeatureSchema(BaseModel):
    """Widths and column names of everything a request carries."""

    model_config = ConfigDict(extra="forbid")

    user_columns: list[str]
    context_columns: list[str]
    item_columns: list[str]
    objectives: list[str] = Field(description="MTL prediction columns, in graph order")

    @property
    def user_dim(self) -> int:
        return len(self.user_columns)

    @property
    def context_dim(self) -> int:
        return len(self.context_columns)

    @property
    def item_dim(self) -> int:
        return len(self.item_columns)

    @property
    def observation_dim(self) -> int:
        """A stage actor sees user ⊕ context ⊕ mean features of its input candidates."""
        return self.user_dim + self.context_dim + self.item_dim


class Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Literal["matching", "pre_ranking", "ranking"]
    keep: int = Field(gt=0, description="candidates this stage keeps (at least k of a request)")


class Exploration(BaseModel):
    """How the service draws `fusion_noise`."""

    model_config = ConfigDict(extra="forbid")

    probability: float = Field(ge=0.0, le=1.0, description="share of requests that explore")
    noise_clip: float = Field(gt=0.0, description="|noise| is clipped to this many stds")


class FusionAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    names: list[str]
    low: list[float]
    high: list[float]
    exploration: Exploration

    @property
    def dim(self) -> int:
        return len(self.names)

    @model_validator(mode="after")
    def _bounds_match(self) -> FusionAction:
        if not (len(self.low) == len(self.high) == len(self.names)):
            raise ValueError("action names, low and high must have the same length")
        if any(lo > hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise ValueError("action low must not exceed high")
        return self


class TensorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: str
    shape: list[int | str] = Field(description="ints are fixed widths, strings dynamic axes")


class GraphSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class Parity(BaseModel):
    """The torch-vs-ONNX check the exporter ran before writing the bundle."""

    model_config = ConfigDict(extra="forbid")

    max_abs_error: float
    tolerance: float
    candidate_counts: list[int] = Field(description="N values tested: below, at, above each stage size")
    passed: bool


class ActorGraph(BaseModel):
    """An optional actor graph of the bundle (ResAct or EnhancedRL) and the exporter's parity check of it."""

    model_config = ConfigDict(extra="forbid")

    graph: str = Field(description="key of the graph in Manifest.graphs")
    parity: Parity
    latent_dim: int | None = Field(default=None, description="resact: width of each latent draw")
    n_draws: int | None = Field(default=None, description="resact: draws per request the actor was trained with")
    exploration_std: list[float] | None = Field(default=None, description="item_fusion: σ per action for item_noise")


class Manifest(BaseModel):
    """manifest.json of one bundle."""

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[2] = FORMAT_VERSION
    policy: str = Field(pattern=POLICY_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    created_at: str
    feature_schema: FeatureSchema
    stages: list[Stage] = Field(min_length=3, max_length=3)
    fusion: FusionAction
    graphs: dict[str, GraphSpec]
    files: dict[str, str] = Field(description="file name → sha256 hex digest, every file but the manifest")
    opset: int
    parity: Parity
    fusion_parity: Parity = Field(description="the torch-vs-ONNX check of the fusion graph")
    training: dict[str, object] = Field(default_factory=dict)
    evaluation: dict[str, object] = Field(default_factory=dict)
    actors: dict[str, ActorGraph] = Field(
        default_factory=dict, description="optional actor graphs: resact (seed 004), item_fusion (seed 003)"
    )

    @model_validator(mode="before")
    @classmethod
    def _known_format(cls, data: object) -> object:
        """Name an older bundle format plainly instead of listing the fields it lacks."""
        found = data.get("format_version", FORMAT_VERSION) if isinstance(data, dict) else FORMAT_VERSION
        if found != FORMAT_VERSION:
            raise ValueError(
                f"bundle format {found} is not served here: format {FORMAT_VERSION} ships the fusion graph "
                f"({FUSION_GRAPH}.onnx) beside the cascade graph; re-export the bundle (cascade export)"
            )
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [s.name for s in self.stages]
        if names != ["matching", "pre_ranking", "ranking"]:
            raise ValueError(f"stages must be matching, pre_ranking, ranking in order, got {names}")
        if self.fusion.dim != 2 * len(self.feature_schema.objectives):
            raise ValueError("fusion action must hold one power and one bias per objective")
        if CASCADE_GRAPH not in self.graphs:
            raise ValueError(f"bundle has no '{CASCADE_GRAPH}' graph")
        if FUSION_GRAPH not in self.graphs:
            raise ValueError(f"bundle has no '{FUSION_GRAPH}' graph; re-export it (cascade export)")
        for graph in self.graphs.values():
            if graph.file not in self.files:
                raise ValueError(f"graph file {graph.file} has no sha256 in files")
        for name, actor in self.actors.items():
            if actor.graph not in self.graphs:
                raise ValueError(f"actor {name} names graph {actor.graph}, which the bundle does not have")
        return self

    @property
    def stage_sizes(self) -> list[int]:
        return [s.keep for s in self.stages]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large graphs do not load twice into memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolved_shape(dims: tuple[str, ...], schema: FeatureSchema) -> list[int | str]:
    """Replace named widths by the schema's numbers; leave dynamic axes (N, k) as names."""
    widths: dict[str, int] = {
        "user_dim": schema.user_dim,
        "context_dim": schema.context_dim,
        "item_dim": schema.item_dim,
        "objectives": len(schema.objectives),
        "A": 2 * len(schema.objectives),
        "obs_dim": schema.observation_dim,
    }
    out: list[int | str] = []
    for dim in dims:
        if dim.isdigit():
            out.append(int(dim))
        else:
            out.append(widths.get(dim, dim))
    return out


def cascade_graph_spec(schema: FeatureSchema, file: str = "cascade.onnx") -> GraphSpec:
    """The GraphSpec every cascade graph must satisfy for this feature schema."""
    return GraphSpec(
        file=file,
        inputs=[TensorSpec(name=n, dtype=t, shape=resolved_shape(d, schema)) for n, (t, d) in CASCADE_INPUTS.items()],
        outputs=[TensorSpec(name=n, dtype=t, shape=resolved_shape(d, schema)) for n, (t, d) in CASCADE_OUTPUTS.items()],
    )


def fusion_graph_spec(schema: FeatureSchema, file: str = "fusion.onnx") -> GraphSpec:
    """The GraphSpec every fusion graph must satisfy for this feature schema."""
    return GraphSpec(
        file=file,
        inputs=[TensorSpec(name=n, dtype=t, shape=resolved_shape(d, schema)) for n, (t, d) in FUSION_INPUTS.items()],
        outputs=[TensorSpec(name=n, dtype=t, shape=resolved_shape(d, schema)) for n, (t, d) in FUSION_OUTPUTS.items()],
    )


def actor_graph_spec(
    inputs: dict[str, tuple[str, tuple[str, ...]]],
    outputs: dict[str, tuple[str, tuple[str, ...]]],
    schema: FeatureSchema,
    file: str,
    latent_dim: int | None = None,
) -> GraphSpec:
    """The GraphSpec of an optional actor graph (RESACT_* or ITEM_FUSION_*): widths from the schema and,
    for ResAct, `latent_dim`; n_draws and N stay dynamic."""

    def shape(dims: tuple[str, ...]) -> list[int | str]:
        resolved = resolved_shape(dims, schema)
        return [latent_dim if d == "latent_dim" and latent_dim is not None else d for d in resolved]

    return GraphSpec(
        file=file,
        inputs=[TensorSpec(name=n, dtype=t, shape=shape(d)) for n, (t, d) in inputs.items()],
        outputs=[TensorSpec(name=n, dtype=t, shape=shape(d)) for n, (t, d) in outputs.items()],
    )
