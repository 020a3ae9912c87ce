"""Serving rank and fusion requests, transport-free: bundle → its fusion strategy → response + decision record.

Which fusion a bundle serves (Gaussian actor, ResAct, per-item) was decided when it loaded
(service/fusion_strategy.py); here every bundle is asked the same way.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from contracts import decision_record
from contracts.decision_record import Arm, ItemFusionLog, Timings
from contracts.item_table import ItemTable
from contracts.manifest import Manifest
from contracts.routing import in_canary
from service.actors import ItemFusionDecision
from service.body import Body
from service.bundle import LoadedBundle
from service.cascade import F32, CascadeInputs, CascadeOutputs, FusionOutputs
from service.decision_log import DecisionLog
from service.decode import candidate_rows, decode_body, rank_inputs, user_inputs
from service.exploration import NoiseSource
from service.finite_outputs import non_finite_output, refusal
from service.fusion_strategy import Decision
from service.item_catalog import ItemCatalog
from service.limits import RequestLimits
from service.metrics import Metrics
from service.problems import invalid_field, not_ready, unknown_policy
from service.records import Scored, packed_record
from service.registry import Registry, Serving
from service.schema import (
    Candidates,
    FusionRequest,
    FusionResponse,
    ItemWeights,
    RankedItem,
    RankRequest,
    RankResponse,
    StageSurvivors,
)

T = TypeVar("T")


class Ranker:
    """Runs the cascade for decoded requests and logs every decision."""

    def __init__(
        self,
        registry: Registry,
        decision_log: DecisionLog,
        noise: NoiseSource,
        metrics: Metrics,
        default_policy: str,
        items: ItemCatalog,
        log_candidate_features: bool = False,
        log_decisions: bool = True,
        limits: RequestLimits | None = None,
    ) -> None:
        self._registry = registry
        self._log = decision_log
        self._noise = noise
        self._metrics = metrics
        self._default_policy = default_policy
        self._items = items
        self._log_candidate_features = log_candidate_features
        self._log_decisions = log_decisions
        self._limits = limits or RequestLimits()

    def serving_for(self, policy: str | None) -> Serving:
        """The snapshot serving `policy` (default policy if None); 404 if unknown, 503 if not loaded."""
        name = policy or self._default_policy
        serving = self._registry.get(name)
        if serving is not None:
            return serving
        if name != self._default_policy and self._registry.error(name) is None:
            raise unknown_policy(name)
        raise not_ready(f"policy '{name}' has no loaded bundle: {self._registry.error(name) or 'not loaded yet'}")

    def rank_body(self, body: Body, started: float) -> RankResponse:
        """Decode a JSON or msgpack rank body and serve it (blocking: decoding and the cascade are CPU work)."""
        return self.rank(self._limits.rank(decode_body(body, RankRequest)), started)

    def fusion_body(self, body: Body, started: float) -> FusionResponse:
        """Decode a JSON or msgpack fusion body and serve it (blocking)."""
        return self.fusion(self._limits.fusion(decode_body(body, FusionRequest)), started)

    def rank(self, request: RankRequest, started: float) -> RankResponse:
        """Pick the arm, validate against its bundle, run its fusion strategy, log the decision, build the response."""
        serving = self.serving_for(request.policy)
        bundle, arm = self._arm(serving, request.user.id)
        manifest, strategy = bundle.manifest, bundle.fusion
        table = self._items.table  # one table for the whole request, like the bundle snapshot
        inputs = rank_inputs(request, manifest, table)
        decode_ms = (time.perf_counter() - started) * 1000  # body read + parse + checks + arrays
        draws = strategy.draw(self._noise)
        decision, timings = self._timed(manifest, started, decode_ms, lambda: strategy.rank(inputs, draws))
        outputs = decision.outputs
        ids = request.candidates.ids
        served_ids = [ids[i] for i in outputs.top_indices.tolist()]
        scored = Scored(
            kind="rank",
            request_id=uuid.uuid4().hex,
            user_id=request.user.id,
            bundle=bundle,
            arm=arm,
            inputs=inputs,
            candidate_ids=ids,
            outputs=outputs,
            draws=draws,
            served_ids=served_ids,
            timings=timings,
            item_table=_table_version(request.candidates, table),
            table_rows=inputs.table_rows,
            inline_matrices=_inline(request.candidates, (inputs.item_features, inputs.mtl_predictions)),
            resact=decision.resact,
        )
        self._refuse_or_record(scored, serving, lambda: _sent(request.candidates, inputs.user, inputs.context, inputs))
        return RankResponse(
            request_id=scored.request_id,
            policy=manifest.policy,
            version=manifest.version,
            arm=arm,
            items=[RankedItem(id=i, score=s) for i, s in zip(served_ids, outputs.top_scores.tolist(), strict=True)],
            fusion_weights=_weights(manifest, outputs.fusion_action),
            stage_survivors=StageSurvivors(*outputs.stage_survivors.tolist()),
            explored=draws.explored,
            novelty=float(outputs.novelty[0]),
            log_prob=float(outputs.log_prob[0]),
            timings=timings,
        )

    def fusion(self, request: FusionRequest, started: float) -> FusionResponse:
        """Fusion weights for the user state (one fusion graph call), per item when candidates are given."""
        serving = self.serving_for(request.policy)
        bundle, arm = self._arm(serving, request.user.id)
        manifest, strategy = bundle.manifest, bundle.fusion
        table = self._items.table
        candidates = request.candidates
        per_item = None
        table_rows = None
        if candidates is not None:
            if strategy.item_fusion is None:
                # Per-item weights need a per-item (EnhancedRL) actor; a request-level bundle must not fake them.
                raise invalid_field(
                    "candidates",
                    f"{manifest.policy}/{manifest.version} has no per-item fusion actor: send no candidates",
                )
            per_item = candidate_rows(candidates, manifest, table)
            table_rows = per_item[2]
        state = user_inputs(request.user, request.context, manifest)
        decode_ms = (time.perf_counter() - started) * 1000
        draws = strategy.draw(self._noise)
        item_noise = self._noise.item_noise(manifest, len(per_item[0])) if per_item is not None else None

        def compute() -> tuple[Decision[FusionOutputs], ItemFusionDecision | None]:
            weighed = strategy.weights(state, draws)
            if per_item is None or item_noise is None:
                return weighed, None
            return weighed, strategy.per_item(state, per_item[0], per_item[1], item_noise)

        (decision, item), timings = self._timed(manifest, started, decode_ms, compute)
        outputs = decision.outputs
        items = item_log = None
        if item is not None and candidates is not None and item_noise is not None:
            names = manifest.fusion.names
            rows = item.action.tolist()
            items = [
                ItemWeights(i, dict(zip(names, r, strict=True))) for i, r in zip(candidates.ids, rows, strict=True)
            ]
            item_log = ItemFusionLog(noise=item_noise, mean=item.mean, actions=item.action)
        scored = Scored(
            kind="fusion",
            request_id=uuid.uuid4().hex,
            user_id=request.user.id,
            bundle=bundle,
            arm=arm,
            inputs=state,
            candidate_ids=candidates.ids if candidates else [],
            outputs=outputs,
            draws=draws,
            served_ids=[],
            timings=timings,
            item_table=_table_version(candidates, table),
            table_rows=table_rows,
            inline_matrices=_inline(candidates, per_item[:2] if per_item is not None else None),
            resact=decision.resact,
            item_fusion=item_log,
        )
        self._refuse_or_record(scored, serving, lambda: _sent(candidates, state.user, state.context, per_item))
        return FusionResponse(
            request_id=scored.request_id,
            policy=manifest.policy,
            version=manifest.version,
            arm=arm,
            weights=_weights(manifest, outputs.fusion_action),
            explored=draws.explored,
            novelty=float(outputs.novelty[0]),
            log_prob=float(outputs.log_prob[0]),
            timings=timings,
            items=items,
        )

    def _arm(self, serving: Serving, user_id: str) -> tuple[LoadedBundle, Arm]:
        """Active or canary bundle for this user; the caller holds this one snapshot for the whole request."""
        bundle = serving.active
        if serving.canary is not None and in_canary(bundle.manifest.policy, user_id, serving.canary_fraction):
            return serving.canary, "canary"
        return bundle, "control"

    def _timed(
        self, manifest: Manifest, started: float, decode_ms: float, compute: Callable[[], T]
    ) -> tuple[T, Timings]:
        """Run the graph call(s) of a request; time them (also as the ORT metric) and the request so far."""
        compute_start = time.perf_counter()
        result = compute()
        compute_ms = (time.perf_counter() - compute_start) * 1000
        self._metrics.ort_seconds.labels(manifest.policy, manifest.version).observe(compute_ms / 1000)
        total_ms = (time.perf_counter() - started) * 1000
        return result, Timings(decode_ms=decode_ms, compute_ms=compute_ms, total_ms=total_ms)

    def _refuse_or_record(self, scored: Scored, serving: Serving, sent: Callable[[], dict[str, F32]]) -> None:
        """Refuse a scoring with a non-finite output (422 naming the input the client sent), or log it and,
        with a shadow version routed, the shadow's scoring of the same inputs.

        With logging on, the record's own check is that test: the record holds every float output of the
        graphs (and ResAct's and per-item fusion's), so one finiteness pass serves both, and only a record
        the check refuses is looked at output by output."""
        if not self._log_decisions:
            _refuse_non_finite(scored, sent)
            return
        record = packed_record(scored, self._log_candidate_features, time.time())
        data = decision_record.encoded_if_valid(record)
        if data is None:
            _refuse_non_finite(scored, sent)
            data = decision_record.encode_packed(record)  # refused with finite outputs: raises, naming the field
        self._log.append_encoded(record.policy, record.request_id, record.time, data)
        self._record_shadow(scored, serving)

    def _record_shadow(self, scored: Scored, serving: Serving) -> None:
        """Log the shadow version's scoring of the served inputs, when one is routed and can take them."""
        shadow = serving.shadow
        if shadow is None:
            return
        if shadow.manifest.feature_schema != scored.bundle.manifest.feature_schema:
            self._metrics.shadow_skipped.labels(shadow.manifest.policy).inc()
            return
        decision = self._shadow_scoring(shadow, scored)
        outputs = decision.outputs
        if non_finite_output(outputs, decision.resact) is not None:
            # The shadow overflowed on inputs the served version answered: nothing loggable to compare.
            self._metrics.shadow_skipped.labels(shadow.manifest.policy).inc()
            return
        # Same inputs and draws, the shadow's own outputs. A fusion call serves no items, and the served
        # version's per-item log is not the shadow's: it stays off its record.
        ids = scored.candidate_ids
        served = [ids[i] for i in outputs.top_indices.tolist()] if isinstance(outputs, CascadeOutputs) else []
        shadow_scored = replace(
            scored,
            request_id=f"{scored.request_id}.shadow",
            bundle=shadow,
            arm="shadow",
            outputs=outputs,
            served_ids=served,
            resact=decision.resact,
            item_fusion=None,
            shadow_of=scored.request_id,
        )
        self._log_record(shadow_scored)

    def _log_record(self, scored: Scored) -> None:
        self._log.append(packed_record(scored, self._log_candidate_features, time.time()))

    def _shadow_scoring(
        self, shadow: LoadedBundle, scored: Scored
    ) -> Decision[CascadeOutputs] | Decision[FusionOutputs]:
        """What the shadow would have done with the served request: its own strategy on the served draws
        wherever they fit it (ResAct: the served latents when their width is its latent_dim)."""
        draws = shadow.fusion.redraw(scored.draws, self._noise)
        if isinstance(scored.inputs, CascadeInputs):
            return shadow.fusion.rank(scored.inputs, draws)
        return shadow.fusion.weights(scored.inputs, draws)


def _refuse_non_finite(scored: Scored, sent: Callable[[], dict[str, F32]]) -> None:
    """Raise the 422 for a scoring with a non-finite output, naming the sent input most likely behind it."""
    bad = non_finite_output(scored.outputs, scored.resact, scored.item_fusion)
    if bad is not None:
        raise refusal(bad, sent())


def _weights(manifest: Manifest, action: F32) -> dict[str, float]:
    """The served [1, A] fusion action by the manifest's action names."""
    return dict(zip(manifest.fusion.names, action[0].tolist(), strict=True))


def _table_version(candidates: Candidates | None, table: ItemTable | None) -> str | None:
    """The item table some of the candidates' rows came from, if any (replaying needs that version)."""
    if candidates is None or table is None or (candidates.features is not None and candidates.predictions is not None):
        return None
    return table.version


def _sent(
    candidates: Candidates | None,
    user: F32,
    context: F32,
    matrices: CascadeInputs | tuple[F32, F32, object] | None,
) -> dict[str, F32]:
    """The request's arrays the client sent, by field: what a non-finite output's refusal may name."""
    sent = {"user.features": user, "context": context}
    if candidates is None or matrices is None:
        return sent
    features, predictions = (
        (matrices.item_features, matrices.mtl_predictions) if isinstance(matrices, CascadeInputs) else matrices[:2]
    )
    if candidates.features is not None:
        sent["candidates.features"] = features
    if candidates.predictions is not None:
        sent["candidates.predictions"] = predictions
    return sent


def _inline(candidates: Candidates | None, matrices: tuple[F32, F32] | None) -> tuple[F32, ...]:
    """The candidate matrices the body carried (features before predictions): the record's digest covers them."""
    if candidates is None or matrices is None:
        return ()
    features, predictions = matrices
    return (features,) * (candidates.features is not None) + (predictions,) * (candidates.predictions is not None)
