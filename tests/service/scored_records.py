"""The encoded decision record of a scoring built in a test, as the ranker builds and checks it."""

from __future__ import annotations

from contracts import decision_record
from contracts.decision_record import ItemFusionLog, ResActLog, Timings
from service.bundle import LoadedBundle
from service.cascade import CascadeInputs, CascadeOutputs, FusionOutputs, UserState
from service.fusion_strategy import Draws
from service.records import Scored, packed_record


def encoded_record(
    bundle: LoadedBundle,
    inputs: CascadeInputs,
    outputs: CascadeOutputs | FusionOutputs,
    draws: Draws,
    *,
    candidates: bool | None = None,
    resact: ResActLog | None = None,
    item_fusion: ItemFusionLog | None = None,
) -> bytes | None:
    """The record's stored bytes, or None when its check refuses it (service/ranker.py then refuses the
    request). A rank takes the whole request; a fusion call the user state, and the candidates only when
    `candidates` (per-item fusion). Candidates are named i0, i1, ... and sent inline."""
    rank = isinstance(outputs, CascadeOutputs)
    with_candidates = rank if candidates is None else candidates
    ids = [f"i{i}" for i in range(len(inputs.item_features))] if with_candidates else []
    scored = Scored(
        kind="rank" if rank else "fusion",
        request_id="r",
        user_id="u",
        bundle=bundle,
        arm="control",
        inputs=inputs if rank else UserState(inputs.user, inputs.context),
        candidate_ids=ids,
        outputs=outputs,
        draws=draws,
        served_ids=[ids[i] for i in outputs.top_indices.tolist()] if isinstance(outputs, CascadeOutputs) else [],
        timings=Timings(decode_ms=0.1, compute_ms=0.2, total_ms=0.3),
        inline_matrices=(inputs.item_features, inputs.mtl_predictions) if with_candidates else (),
        resact=resact,
        item_fusion=item_fusion,
    )
    return decision_record.encoded_if_valid(packed_record(scored, False, 1.7e9))
