"""A bundle's fusion strategy, chosen once when the bundle loads: how it ranks and which weights it serves.

- `GaussianFusion` (Kuaishou request-level MDP): the fusion actor's Gaussian head, explored by the service's
  noise draw; /v1/rank is one cascade graph call, /v1/fusion one fusion graph call.
- `ResActFusion` (ResAct, ICLR 2023, seed 004): n latent draws → the CVAE decoder's n reconstructed actions,
  each improved by the residual network, the best by Q1 served. The draws are its policy, not exploration:
  it never explores, and the action is a deterministic function of the logged draws (log_prob 0, std 0).
  /v1/rank is resact → rank_by_action, /v1/fusion is resact plus the fusion graph for the RND novelty.
- Either may carry the bundle's per-item fusion actor (EnhancedRL, seed 003) for /v1/fusion with candidates.

Every strategy answers the same calls, so the ranker never asks which kind it holds. The outputs' fusion
fields always describe the action served (the decision record's `fusion` holds them as they are).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import onnxruntime as ort

from contracts.decision_record import ResActLog
from contracts.manifest import Manifest
from service.actors import (
    Actors,
    ItemFusionActor,
    ItemFusionDecision,
    ResActActor,
    ResActDecision,
    rank_with_resact,
    run_item_fusion,
    run_resact,
)
from service.cascade import F32, CascadeInputs, CascadeOutputs, FusionOutputs, UserState, run_cascade, run_fusion
from service.exploration import NoiseSource

Out = TypeVar("Out", CascadeOutputs, FusionOutputs)


@dataclass(frozen=True)
class Draws:
    """The randomness of one decision, drawn by the service and logged so the decision replays exactly."""

    noise: F32  # [1, A] the Gaussian actor's exploration draw; zeros when it serves its mean (and for ResAct)
    explored: bool
    latents: F32 | None = None  # [1, n_draws, latent_dim] ResAct's decoder draws


@dataclass(frozen=True)
class Decision(Generic[Out]):
    """What a strategy did: the graph outputs (fusion fields = the action served) and ResAct's choice, if any."""

    outputs: Out
    resact: ResActLog | None = None


class FusionStrategy(ABC):
    """One bundle's fusion: draw, rank, weigh, and redraw for a shadow scoring of someone else's request."""

    def __init__(self, manifest: Manifest, fusion: ort.InferenceSession, item_fusion: ItemFusionActor | None) -> None:
        self.manifest = manifest
        self._fusion = fusion  # fusion.onnx: the fusion actor and RND alone
        self.item_fusion = item_fusion  # per-item (EnhancedRL) weights, when the bundle ships them

    @abstractmethod
    def draw(self, source: NoiseSource) -> Draws:
        """This request's draws."""

    @abstractmethod
    def rank(self, inputs: CascadeInputs, draws: Draws) -> Decision[CascadeOutputs]:
        """Stages, fused score and top-k under the action these draws give."""

    @abstractmethod
    def weights(self, state: UserState, draws: Draws) -> Decision[FusionOutputs]:
        """The request-level fusion weights (and the RND novelty) for the user state alone."""

    @abstractmethod
    def redraw(self, served: Draws, source: NoiseSource) -> Draws:
        """Draws for scoring a request another bundle served (shadow): the served ones wherever they fit."""

    @abstractmethod
    def quiet(self) -> Draws:
        """All-zero draws of the right shapes (warm-up)."""

    def per_item(self, state: UserState, features: F32, predictions: F32, noise: F32) -> ItemFusionDecision:
        """One weight vector per candidate (EnhancedRL, seed 003); only for a bundle with a per-item actor."""
        if self.item_fusion is None:
            raise ValueError(f"{self.manifest.policy}/{self.manifest.version} has no per-item fusion actor")
        return run_item_fusion(self.item_fusion, state.user, state.context, features, predictions, noise)

    def _zero_noise(self) -> F32:
        return np.zeros((1, self.manifest.fusion.dim), dtype=np.float32)


class GaussianFusion(FusionStrategy):
    """The cascade graph's own fusion actor: mean + std·noise, clipped to the manifest's bounds."""

    def __init__(
        self,
        manifest: Manifest,
        cascade: ort.InferenceSession,
        fusion: ort.InferenceSession,
        item_fusion: ItemFusionActor | None,
    ) -> None:
        super().__init__(manifest, fusion, item_fusion)
        self._cascade = cascade

    def draw(self, source: NoiseSource) -> Draws:
        noise, explored = source.draw(self.manifest)
        return Draws(noise, explored)

    def rank(self, inputs: CascadeInputs, draws: Draws) -> Decision[CascadeOutputs]:
        return Decision(run_cascade(self._cascade, self.manifest, inputs, draws.noise))

    def weights(self, state: UserState, draws: Draws) -> Decision[FusionOutputs]:
        return Decision(run_fusion(self._fusion, state, draws.noise))

    def redraw(self, served: Draws, source: NoiseSource) -> Draws:
        return Draws(served.noise, served.explored)  # the served noise: same inputs, same draw

    def quiet(self) -> Draws:
        return Draws(self._zero_noise(), False)


class ResActFusion(FusionStrategy):
    """ResAct's residual selector (seed 004) serves the fusion action; the Gaussian actor is not asked."""

    def __init__(
        self, manifest: Manifest, fusion: ort.InferenceSession, actor: ResActActor, item_fusion: ItemFusionActor | None
    ) -> None:
        super().__init__(manifest, fusion, item_fusion)
        self._actor = actor

    def draw(self, source: NoiseSource) -> Draws:
        # The latents are always drawn: they are ResAct's policy, so the request does not "explore".
        return Draws(self._zero_noise(), False, source.latents(self._actor.n_draws, self._actor.latent_dim))

    def rank(self, inputs: CascadeInputs, draws: Draws) -> Decision[CascadeOutputs]:
        latents = self._latents(draws)
        decision, outputs = rank_with_resact(self._actor, self.manifest, inputs, latents)
        return Decision(outputs, _resact_log(latents, decision))

    def weights(self, state: UserState, draws: Draws) -> Decision[FusionOutputs]:
        latents = self._latents(draws)
        decision = run_resact(self._actor, state.user, state.context, latents)
        # The fusion graph only for the RND novelty of the state (it does not depend on the noise).
        novelty = run_fusion(self._fusion, state, self._zero_noise()).novelty
        action = decision.action
        zeros = np.zeros_like(action)
        # A deterministic action, as on a ResAct rank (rank_with_resact): mean = raw = action, std 0, log_prob 0.
        outputs = FusionOutputs(action, zeros, action, action, np.zeros(1, dtype=np.float32), novelty)
        return Decision(outputs, _resact_log(latents, decision))

    def redraw(self, served: Draws, source: NoiseSource) -> Draws:
        latents = served.latents
        if latents is None or latents.shape[2] != self._actor.latent_dim:
            latents = source.latents(self._actor.n_draws, self._actor.latent_dim)
        return Draws(served.noise, served.explored, latents)

    def quiet(self) -> Draws:
        shape = (1, self._actor.n_draws, self._actor.latent_dim)
        return Draws(self._zero_noise(), False, np.zeros(shape, dtype=np.float32))

    def _latents(self, draws: Draws) -> F32:
        if draws.latents is None:
            raise ValueError("a ResAct decision needs its latent draws")
        return draws.latents


def choose_fusion(
    manifest: Manifest, cascade: ort.InferenceSession, fusion: ort.InferenceSession, actors: Actors
) -> FusionStrategy:
    """The bundle's one strategy: ResAct's when it ships a resact actor, else the cascade's Gaussian actor."""
    if actors.resact is not None:
        return ResActFusion(manifest, fusion, actors.resact, actors.item_fusion)
    return GaussianFusion(manifest, cascade, fusion, actors.item_fusion)


def _resact_log(latents: F32, decision: ResActDecision) -> ResActLog:
    return ResActLog(
        latents=latents[0],
        candidates=decision.candidates[0],
        q=decision.q[0],
        choice=decision.choice,
        action=decision.action[0],
    )
