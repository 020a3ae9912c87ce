"""The optional actor graphs of a bundle (ResAct, seed 004; EnhancedRL, seed 003), run beside the cascade graph.

- `resact` (seed 004): n latent draws → n reconstructed and improved fusion actions → the best by Q1.
  The draws are an input, drawn and logged by the service, so a decision replays exactly. It ships with
  `rank_by_action`, the bundle's cascade taking the fusion action as an input, so /v1/rank ranks with
  ResAct's action: resact graph → rank_by_action graph, two calls, both replayable from the record.
- `item_fusion` (seed 003, EnhancedRL): one fusion action per candidate from user ⊕ context ⊕ item ⊕
  its predictions, in one call over the N candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from contracts.manifest import (
    ITEM_FUSION_GRAPH,
    ITEM_FUSION_INPUTS,
    ITEM_FUSION_OUTPUTS,
    RANK_BY_ACTION_GRAPH,
    RANK_BY_ACTION_INPUTS,
    RANK_BY_ACTION_OUTPUTS,
    RESACT_GRAPH,
    RESACT_INPUTS,
    RESACT_OUTPUTS,
    ActorGraph,
    GraphSpec,
    Manifest,
    actor_graph_spec,
)
from service.cascade import F32, CascadeInputs, CascadeOutputs, request_feeds


@dataclass(frozen=True)
class ResActActor:
    session: ort.InferenceSession
    latent_dim: int
    n_draws: int
    ranking: ort.InferenceSession  # rank_by_action: the cascade ranking with ResAct's action


@dataclass(frozen=True)
class ItemFusionActor:
    session: ort.InferenceSession
    exploration_std: list[float]


@dataclass(frozen=True)
class Actors:
    resact: ResActActor | None = None
    item_fusion: ItemFusionActor | None = None


@dataclass(frozen=True)
class ResActDecision:
    action: F32  # [1, A] the served fusion action
    candidates: F32  # [1, n_draws, A]
    q: F32  # [1, n_draws]
    choice: int


@dataclass(frozen=True)
class ItemFusionDecision:
    mean: F32  # [N, A]
    action: F32  # [N, A]
    scores: F32  # [N]


def actor_specs(manifest: Manifest) -> dict[str, GraphSpec]:
    """The GraphSpec each declared actor graph must satisfy (for the loader's signature check)."""
    schema = manifest.feature_schema
    specs: dict[str, GraphSpec] = {}
    for name, actor in manifest.actors.items():
        file = manifest.graphs[actor.graph].file
        if name == RESACT_GRAPH:
            specs[name] = actor_graph_spec(RESACT_INPUTS, RESACT_OUTPUTS, schema, file, actor.latent_dim)
        elif name == ITEM_FUSION_GRAPH:
            specs[name] = actor_graph_spec(ITEM_FUSION_INPUTS, ITEM_FUSION_OUTPUTS, schema, file)
        elif name == RANK_BY_ACTION_GRAPH:
            specs[name] = actor_graph_spec(RANK_BY_ACTION_INPUTS, RANK_BY_ACTION_OUTPUTS, schema, file)
    return specs


def make_actors(manifest: Manifest, sessions: dict[str, ort.InferenceSession]) -> Actors:
    """Bind opened sessions to what the manifest says of each actor; refuse incomplete declarations."""
    resact = item_fusion = None
    ranking = sessions.get(RANK_BY_ACTION_GRAPH)
    if (RESACT_GRAPH in sessions) != (ranking is not None):
        # Without it /v1/rank would rank with the Gaussian actor while /v1/fusion serves ResAct's weights.
        raise ValueError(f"a {RESACT_GRAPH} actor and the {RANK_BY_ACTION_GRAPH} graph come together or not at all")
    for name, session in sessions.items():
        declared: ActorGraph = manifest.actors[name]
        if name == RESACT_GRAPH and ranking is not None:
            if not declared.latent_dim or not declared.n_draws:
                raise ValueError("the resact actor must declare latent_dim and n_draws")
            resact = ResActActor(session, declared.latent_dim, declared.n_draws, ranking)
        elif name == ITEM_FUSION_GRAPH:
            std = declared.exploration_std or []
            if len(std) != manifest.fusion.dim:
                raise ValueError(f"item_fusion exploration_std must have {manifest.fusion.dim} values")
            item_fusion = ItemFusionActor(session, std)
    return Actors(resact, item_fusion)


def run_resact(actor: ResActActor, user: F32, context: F32, latents: F32) -> ResActDecision:
    action, candidates, q, choice = actor.session.run(
        list(RESACT_OUTPUTS), {"user": user, "context": context, "latents": latents}
    )
    return ResActDecision(action, candidates, q, int(choice[0]))


def rank_with_resact(
    actor: ResActActor, manifest: Manifest, inputs: CascadeInputs, latents: F32
) -> tuple[ResActDecision, CascadeOutputs]:
    """ResAct's action from the draws, then the cascade ranking with it. The outputs' fusion fields describe
    a deterministic action (mean = raw = action, std 0, log_prob 0): the randomness is in the draws."""
    decision = run_resact(actor, inputs.user, inputs.context, latents)
    feeds = {**request_feeds(manifest, inputs), "fusion_action": decision.action}
    outputs = dict(zip(RANK_BY_ACTION_OUTPUTS, actor.ranking.run(list(RANK_BY_ACTION_OUTPUTS), feeds), strict=True))
    action = decision.action
    outputs |= {
        "fusion_mean": action,
        "fusion_std": np.zeros_like(action),
        "fusion_raw_action": action,
        "fusion_action": action,
        "log_prob": np.zeros(1, dtype=np.float32),
    }
    return decision, CascadeOutputs(**outputs)


def run_item_fusion(
    actor: ItemFusionActor, user: F32, context: F32, features: F32, predictions: F32, noise: F32
) -> ItemFusionDecision:
    feeds = {"user": user, "context": context, "item_features": features, "mtl_predictions": predictions}
    mean, action, scores = actor.session.run(list(ITEM_FUSION_OUTPUTS), {**feeds, "item_noise": noise})
    return ItemFusionDecision(mean, action, scores)
