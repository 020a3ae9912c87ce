"""CascadePolicy: the whole request as one torch module, exported as `cascade.onnx`.

matching → pre-ranking → ranking (UNEX-RL): stage i's actor sees o_i = user ⊕ context ⊕ mean features
of the candidates entering stage i (the cascading information chain), outputs a_i ≥ 0, scores each
candidate with h_i(user, item)·a_i (h_i the heads' predictions, or their logits: `stage_score`) and
keeps its top min(n_in, max(size_i, k)). Then the request-level fusion actor (Kuaishou) picks (w, b)
and the ranking survivors are ordered by Σ_j w_j·log(p_j + b_j) over the request's MTL predictions p;
the top k are served. The RND novelty of the state rides along.

`forward` has exactly the signature of `contracts.manifest.CASCADE_INPUTS` → `CASCADE_OUTPUTS`. Every
size that depends on N or k is computed from tensors inside the graph (DESIGN.md "Known traps": a
Python `min(k, n)` is traced into a constant and the exported TopK fails for smaller requests).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

import torch
from torch import nn

from models.algorithms.rnd import RND
from models.nets.actors import FusionActor, StageActor
from models.nets.heads import MLPHead, PredictionHead, TwoTowerHead
from models.sim.config import SimConfig

StageName = Literal["matching", "pre_ranking", "ranking"]
STAGES: tuple[StageName, StageName, StageName] = ("matching", "pre_ranking", "ranking")


@dataclass(frozen=True)
class PolicyConfig:
    """Widths of the request and the sizes of the networks."""

    user_dim: int
    context_dim: int
    item_dim: int
    objectives: tuple[str, ...]
    dense_mask: tuple[bool, ...]
    max_watch_time: float
    # Fusion action bounds: powers w_j in [w_low, w_high], biases b_j in [b_low, b_high].
    w_bounds: tuple[float, float] = (0.0, 2.0)
    b_bounds: tuple[float, float] = (0.01, 1.0)
    matching_embedding: int = 8
    pre_ranking_hidden: tuple[int, ...] = (32,)
    ranking_hidden: tuple[int, ...] = (64, 64)
    actor_hidden: int = 32
    fusion_hidden: int = 64
    rnd_out: int = 16
    # Fusion powers normalised to a fixed sum (models/nets/actors.FusionActor `powers`): the v2 methods.
    scale_free_powers: bool = False
    # What a stage's action weights: the heads' predictions (watch minutes beside probabilities, so watch
    # decides every stage), or their logits, on one scale: Σ_j a_j·logit ĥ_j ranks like Π_j ĥ_j^{a_j} for
    # rare events, the fusion's log-power form (SIMULATOR.md "v2.2").
    stage_score: Literal["predictions", "logits"] = "predictions"

    @classmethod
    def from_sim(cls, sim: SimConfig) -> PolicyConfig:
        """Request widths and objectives of a simulated world, default network sizes."""
        return cls(
            user_dim=sim.user_dim,
            context_dim=sim.observed_context_dim,
            item_dim=sim.item_dim,
            objectives=sim.objectives,
            dense_mask=sim.dense_mask,
            max_watch_time=sim.max_watch_time,
        )

    @property
    def n_objectives(self) -> int:
        return len(self.objectives)

    @property
    def state_dim(self) -> int:
        """Fusion / RND state: user ⊕ context."""
        return self.user_dim + self.context_dim

    @property
    def obs_dim(self) -> int:
        """Stage observation: user ⊕ context ⊕ mean item features."""
        return self.state_dim + self.item_dim

    @property
    def action_names(self) -> list[str]:
        return [f"w_{o}" for o in self.objectives] + [f"b_{o}" for o in self.objectives]

    @property
    def fusion_low(self) -> list[float]:
        return [self.w_bounds[0]] * self.n_objectives + [self.b_bounds[0]] * self.n_objectives

    @property
    def fusion_high(self) -> list[float]:
        return [self.w_bounds[1]] * self.n_objectives + [self.b_bounds[1]] * self.n_objectives


class Selection(NamedTuple):
    """What the three stages did for a batch of B requests."""

    rows: torch.Tensor  # [B, m] original candidate rows of the ranking survivors, best first
    observations: torch.Tensor  # [B, 3, obs_dim]
    actions: torch.Tensor  # [B, 3, objectives]
    survivors: torch.Tensor  # [3] int64, candidates kept by each stage (same for the whole batch)
    log_prob: torch.Tensor  # [B] Σ_i log π_i(a_i | o_i) of sampled stage actions; zeros when served at the mean


class _Stage(NamedTuple):
    """One stage of one batch: what it saw, did, scored and kept."""

    observation: torch.Tensor  # [B, obs_dim]
    action: torch.Tensor  # [B, objectives]
    score: torch.Tensor  # [B, n_in]
    kept: torch.Tensor  # 0-d int64
    rows: torch.Tensor  # [B, kept] original candidate rows of its survivors, best first
    log_prob: torch.Tensor  # [B] log π_i(a_i | o_i) of a sampled action; zeros at the mean


def size_of(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x.shape[dim] as a 0-d int64 tensor: a Shape op in the exported graph, not a traced constant."""
    return torch._shape_as_tensor(x)[dim]


def stage_keep(n_in: torch.Tensor, size: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """How many candidates a stage keeps: min(n_in, max(size, k)), all 0-d int64 tensors."""
    return torch.minimum(n_in, torch.maximum(size, k))


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x [B, N, D] at rows [B, m] → [B, m, D]."""
    return torch.gather(x, 1, rows.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def fused_scores(predictions: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j·log(max(p_j, 0) + b_j) = log Π_j (p_j + b_j)^{w_j}; predictions [B, m, J], action [B, 2J]."""
    w, b = action.unsqueeze(1).chunk(2, dim=-1)
    return (w * torch.log(predictions.clamp(min=0.0) + b)).sum(-1)


def top_k(scores: torch.Tensor, rows: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The min(m, k) best of scores [B, m] → (their rows [B, k'], scores [B, k'] descending)."""
    final = torch.minimum(size_of(scores, 1), k.reshape(()))
    best = torch.topk(scores, final, dim=1)  # type: ignore[arg-type]  # tensor k: stays dynamic when traced
    return torch.gather(rows, 1, best.indices), best.values


class CascadePolicy(nn.Module):
    """Three stages with their heads and actors, the fusion actor and RND, in one module."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.heads = nn.ModuleList(
            [
                TwoTowerHead(c.state_dim, c.item_dim, c.dense_mask, c.max_watch_time, c.matching_embedding),
                MLPHead(c.state_dim, c.item_dim, c.dense_mask, c.max_watch_time, c.pre_ranking_hidden),
                MLPHead(c.state_dim, c.item_dim, c.dense_mask, c.max_watch_time, c.ranking_hidden),
            ]
        )
        self.stage_actors = nn.ModuleList([StageActor(c.obs_dim, c.n_objectives, c.actor_hidden) for _ in STAGES])
        self.fusion = FusionActor(
            c.state_dim,
            c.fusion_low,
            c.fusion_high,
            c.fusion_hidden,
            powers=c.n_objectives if c.scale_free_powers else 0,
        )
        self.rnd = RND(c.state_dim, c.rnd_out)

    def serve_constant(self, action: torch.Tensor, std_fraction: float = 0.02) -> None:
        """Make the fusion actor serve `action` [A] for every state, with a small fixed exploration std
        (bundles of fixed-weight methods; the default row of a per-segment table).

        The scale-free powers are turned off, in the actor and in the config its checkpoint rebuilds from:
        a constant has no powers to learn, and the action written here must be served as written."""
        self.fusion.powers = 0
        self.config = replace(self.config, scale_free_powers=False)
        fusion = self.fusion
        last = fusion.net[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(fusion.mean_logit(action))
            fusion.log_std.copy_(torch.log(std_fraction * (fusion.high - fusion.low)))

    def serve_constant_stages(self, actions: torch.Tensor) -> None:
        """Make every stage actor serve its row of `actions` [3, J] (≥ 0) for every observation: the constant
        stage weights of a no-RL baseline. Zero weights are served as 1e-4 (softplus never reaches 0)."""
        for actor, action in zip(self.stage_actors, actions, strict=True):
            assert isinstance(actor, StageActor)
            last = actor.net[-1]
            assert isinstance(last, nn.Linear)
            with torch.no_grad():
                last.weight.zero_()
                # softplus⁻¹(a) = log(eᵃ − 1)
                last.bias.copy_(torch.log(torch.expm1(action.clamp(min=1e-4))))

    def head(self, stage: int) -> PredictionHead:
        head = self.heads[stage]
        assert isinstance(head, PredictionHead)
        return head

    def stage_values(self, stage: int, state: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """What stage `stage`'s action weights, [B, N, objectives]: its heads' predictions or their logits
        (`PolicyConfig.stage_score`)."""
        head = self.head(stage)
        return head.logits(state, items) if self.config.stage_score == "logits" else head(state, items)

    def keep(self, n_in: torch.Tensor, size: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Candidates a stage keeps; a method so tests can plant the traced-constant trap in a subclass."""
        return stage_keep(n_in, size, k)

    def select(
        self,
        state: torch.Tensor,
        items: torch.Tensor,
        stage_sizes: torch.Tensor,
        k: torch.Tensor,
        stage_noise: torch.Tensor | None = None,
        stage_actions: torch.Tensor | None = None,
    ) -> Selection:
        """Run the three stages for B requests sharing the candidate count N.

        state [B, S] (user ⊕ context), items [B, N, I], stage_sizes [3] int64, k [1] int64. With
        stage_noise [B, 3, J] the stage actors explore (training); without it they serve their mean. With
        stage_actions [B, 3, J] the stages replay those actions instead of asking their actors: UNEX-RL's
        cascading information chain rebuilds every downstream observation from o_1 and upstream actions.
        """
        stages = list(self._stages(state, items, stage_sizes, k, stage_noise, stage_actions))
        return Selection(
            rows=stages[-1].rows,
            observations=torch.stack([stage.observation for stage in stages], dim=1),
            actions=torch.stack([stage.action for stage in stages], dim=1),
            survivors=torch.stack([stage.kept for stage in stages]),
            log_prob=torch.stack([stage.log_prob for stage in stages]).sum(0),
        )

    def _stages(
        self,
        state: torch.Tensor,
        items: torch.Tensor,
        stage_sizes: torch.Tensor,
        k: torch.Tensor,
        stage_noise: torch.Tensor | None = None,
        stage_actions: torch.Tensor | None = None,
    ) -> Iterator[_Stage]:
        """The stages one at a time (`select` documents the arguments), each with its scores."""
        # Original row numbers 0..N-1 per request, built from the data so N stays dynamic under tracing.
        rows = torch.cumsum(torch.ones_like(items[..., 0], dtype=torch.int64), dim=1) - 1
        features = items
        k0 = k.reshape(())
        for i, actor in enumerate(self.stage_actors):
            assert isinstance(actor, StageActor)
            # o_i: the user state and a summary of the candidates this stage receives (information chain).
            obs = torch.cat([state, features.mean(dim=1)], dim=-1)
            log_prob = torch.zeros_like(state[:, 0])
            if stage_actions is not None:
                action = stage_actions[:, i]
            elif stage_noise is None:
                action = actor(obs)
            else:
                action, log_prob = actor.sample(obs, stage_noise[:, i])
            # Selection function: the stage's heads weighted by the stage action, h_i(u, x)·a_i.
            score = (self.stage_values(i, state, features) * action.unsqueeze(1)).sum(-1)
            kept = self.keep(size_of(score, 1), stage_sizes[i], k0)
            # k as a 0-d tensor, not an int: the tracer records it as a graph value (a dynamic TopK k).
            best = torch.topk(score, kept, dim=1).indices  # type: ignore[arg-type]  # tensor k, as above
            rows = torch.gather(rows, 1, best)
            features = gather_rows(features, best)
            yield _Stage(obs, action, score, kept, rows, log_prob)

    @torch.no_grad()
    def cut_margin(self, state: torch.Tensor, items: torch.Tensor, stage_sizes: torch.Tensor, k: torch.Tensor) -> float:
        """The smallest score gap, over the stages that drop candidates, between the last candidate kept and
        the first one dropped. Near 0, two runtimes that round differently may keep different candidates:
        a tie, not a disagreement of the graphs."""
        gaps = [float("inf")]
        for stage in self._stages(state, items, stage_sizes, k):
            n, kept = stage.score.shape[1], int(stage.kept)
            if kept < n:
                top = torch.topk(stage.score, kept + 1, dim=1).values
                gaps.append(float((top[:, kept - 1] - top[:, kept]).min()))
        return min(gaps)

    def rank(
        self,
        state: torch.Tensor,
        item_features: torch.Tensor,
        mtl_predictions: torch.Tensor,
        stage_sizes: torch.Tensor,
        k: torch.Tensor,
        action: torch.Tensor,
    ) -> tuple[Selection, torch.Tensor, torch.Tensor]:
        """One request's stages, then its survivors ordered by the fused score under `action` [1, A]:
        (selection, top rows [1, k'], top scores [1, k'])."""
        selection = self.select(state, item_features.unsqueeze(0), stage_sizes, k)
        predictions = gather_rows(mtl_predictions.unsqueeze(0), selection.rows)
        top_rows, top_scores = top_k(fused_scores(predictions, action), selection.rows, k)
        return selection, top_rows, top_scores

    def fusion_step(
        self, user: torch.Tensor, context: torch.Tensor, fusion_noise: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """The fusion actor and the RND novelty alone, `FUSION_INPUTS` → `FUSION_OUTPUTS` (exported as
        `fusion.onnx`): the same modules on the same state as in `forward`, without the stages."""
        state = torch.cat([user, context], dim=-1)  # [1, S]
        fusion = self.fusion(state, fusion_noise)
        return fusion.mean, fusion.std, fusion.raw, fusion.action, fusion.log_prob, self.rnd(state)

    def forward(
        self,
        user: torch.Tensor,
        context: torch.Tensor,
        item_features: torch.Tensor,
        mtl_predictions: torch.Tensor,
        fusion_noise: torch.Tensor,
        stage_sizes: torch.Tensor,
        k: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One request, in `CASCADE_INPUTS` order → the tensors of `CASCADE_OUTPUTS`, in order."""
        state = torch.cat([user, context], dim=-1)  # [1, S]
        fusion = self.fusion(state, fusion_noise)
        selection, top_rows, top_scores = self.rank(
            state, item_features, mtl_predictions, stage_sizes, k, fusion.action
        )
        return (
            top_rows[0],
            top_scores[0],
            selection.observations[0],
            selection.actions[0],
            selection.survivors,
            fusion.mean,
            fusion.std,
            fusion.raw,
            fusion.action,
            fusion.log_prob,
            self.rnd(state),
        )
