"""Serving one rank request, transport-free: bundle → cascade → response + decision record."""

from __future__ import annotations

import hashlib
import time
import uuid

import numpy as np

from service.bundle import LoadedBundle
from service.cascade import CascadeInputs, CascadeOutputs, run_cascade
from service.decision_log import DecisionLog
from service.decision_record import SCHEMA_VERSION, CandidateLog, DecisionRecord, FusionLog, StageLog
from service.decode import decode_json, rank_inputs
from service.exploration import NoiseSource
from service.metrics import Metrics
from service.problems import not_ready, unknown_policy
from service.registry import Registry, Serving
from service.routing import in_canary
from service.schema import RankedItem, RankRequest, RankResponse, StageSurvivors, Timings


class Ranker:
    """Runs the cascade for decoded requests and logs every decision."""

    def __init__(
        self,
        registry: Registry,
        decision_log: DecisionLog,
        noise: NoiseSource,
        metrics: Metrics,
        default_policy: str,
        log_candidate_features: bool = False,
    ) -> None:
        self._registry = registry
        self._log = decision_log
        self._noise = noise
        self._metrics = metrics
        self._default_policy = default_policy
        self._log_candidate_features = log_candidate_features

    def serving_for(self, policy: str | None) -> Serving:
        """The snapshot serving `policy` (default policy if None); 404 if unknown, 503 if not loaded."""
        name = policy or self._default_policy
        serving = self._registry.get(name)
        if serving is not None:
            return serving
        if name != self._default_policy and self._registry.error(name) is None:
            raise unknown_policy(name)
        raise not_ready(f"policy '{name}' has no loaded bundle: {self._registry.error(name) or 'not loaded yet'}")

    def rank_body(self, body: bytes, started: float) -> RankResponse:
        """Decode a JSON rank body and serve it (blocking: decoding and the cascade are CPU work)."""
        return self.rank(decode_json(body, RankRequest), started)

    def rank(self, request: RankRequest, started: float) -> RankResponse:
        """Pick the arm, validate against its bundle, run the cascade, log the decision, build the response."""
        # Hold one snapshot for the whole request: a swap mid-request cannot mix versions.
        serving = self.serving_for(request.policy)
        bundle, arm = serving.active, "control"
        if serving.canary is not None and in_canary(bundle.manifest.policy, request.user.id, serving.canary_fraction):
            bundle, arm = serving.canary, "canary"
        manifest = bundle.manifest
        inputs = rank_inputs(request, manifest)
        decode_ms = (time.perf_counter() - started) * 1000  # body read + parse + checks + arrays
        noise, explored = self._noise.draw(manifest)
        compute_start = time.perf_counter()
        outputs = run_cascade(bundle.session, manifest, inputs, noise)
        compute_ms = (time.perf_counter() - compute_start) * 1000
        self._metrics.ort_seconds.labels(manifest.policy, manifest.version).observe(compute_ms / 1000)

        ids = request.candidates.ids
        served_ids = [ids[i] for i in outputs.top_indices.tolist()]
        scores = outputs.top_scores.tolist()
        weights = outputs.fusion_action[0].tolist()
        survivors = outputs.stage_survivors.tolist()
        request_id = uuid.uuid4().hex
        timings = Timings(
            decode_ms=decode_ms,
            compute_ms=compute_ms,
            total_ms=(time.perf_counter() - started) * 1000,
        )
        record = self._record(request, bundle, inputs, outputs, noise, explored, served_ids, request_id, timings, arm)
        self._log.append(record)
        if serving.shadow is not None:
            self._log_shadow(request, serving.shadow, bundle, inputs, noise, explored, request_id, timings)
        return RankResponse(
            request_id=request_id,
            policy=manifest.policy,
            version=manifest.version,
            arm=arm,
            items=[RankedItem(id=i, score=s) for i, s in zip(served_ids, scores, strict=True)],
            fusion_weights=dict(zip(manifest.fusion.names, weights, strict=True)),
            stage_survivors=StageSurvivors(*survivors),
            explored=explored,
            novelty=float(outputs.novelty[0]),
            log_prob=float(outputs.log_prob[0]),
            timings=timings,
        )

    def _log_shadow(
        self,
        request: RankRequest,
        shadow: LoadedBundle,
        served: LoadedBundle,
        inputs: CascadeInputs,
        noise: np.ndarray,
        explored: bool,
        request_id: str,
        timings: Timings,
    ) -> None:
        """Score the same request with the shadow version (same inputs, same draws) and log, never serve."""
        if shadow.manifest.feature_schema != served.manifest.feature_schema:
            self._metrics.shadow_skipped.labels(shadow.manifest.policy).inc()
            return
        outputs = run_cascade(shadow.session, shadow.manifest, inputs, noise)
        ids = request.candidates.ids
        shadow_ids = [ids[i] for i in outputs.top_indices.tolist()]
        shadow_id = f"{request_id}.shadow"
        record = self._record(
            request,
            shadow,
            inputs,
            outputs,
            noise,
            explored,
            shadow_ids,
            shadow_id,
            timings,
            "shadow",
            request_id,
        )
        self._log.append(record)

    def _record(
        self,
        request: RankRequest,
        bundle: LoadedBundle,
        inputs: CascadeInputs,
        outputs: CascadeOutputs,
        noise: np.ndarray,
        explored: bool,
        served_ids: list[str],
        request_id: str,
        timings: Timings,
        arm: str,
        shadow_of: str | None = None,
    ) -> DecisionRecord:
        manifest = bundle.manifest
        digest = hashlib.sha256(inputs.item_features.tobytes())
        digest.update(inputs.mtl_predictions.tobytes())
        candidates = CandidateLog(ids=request.candidates.ids, digest=digest.hexdigest())
        if self._log_candidate_features:
            candidates.features = inputs.item_features.tolist()
            candidates.predictions = inputs.mtl_predictions.tolist()
        stages = [
            StageLog(
                name=stage.name,
                keep=stage.keep,
                survivors=int(outputs.stage_survivors[i]),
                observation=outputs.stage_observations[i].tolist(),
                action=outputs.stage_actions[i].tolist(),
            )
            for i, stage in enumerate(manifest.stages)
        ]
        user = inputs.user[0].tolist()
        context = inputs.context[0].tolist()
        return DecisionRecord(
            schema_version=SCHEMA_VERSION,
            request_id=request_id,
            time=time.time(),
            user_id=request.user.id,
            policy=manifest.policy,
            version=manifest.version,
            arm=arm,
            k=inputs.k,
            user_features=user,
            context=context,
            candidates=candidates,
            stages=stages,
            fusion=FusionLog(
                state=user + context,
                mean=outputs.fusion_mean[0].tolist(),
                std=outputs.fusion_std[0].tolist(),
                noise=noise[0].tolist(),
                raw_action=outputs.fusion_raw_action[0].tolist(),
                action=outputs.fusion_action[0].tolist(),
                names=manifest.fusion.names,
            ),
            served_ids=served_ids,
            served_scores=outputs.top_scores.tolist(),
            log_prob=float(outputs.log_prob[0]),
            novelty=float(outputs.novelty[0]),
            explored=explored,
            timings=timings,
            shadow_of=shadow_of,
        )
