"""Building a decision record (contracts/decision_record.py) from one scoring of one request."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contracts.decision_record import (
    SCHEMA_VERSION,
    Arm,
    CandidateLog,
    DecisionKind,
    DecisionRecord,
    FusionLog,
    ItemFusionLog,
    ResActLog,
    StageLog,
    Timings,
    pack_rows,
)
from service.bundle import LoadedBundle
from service.cascade import F32, CascadeInputs, CascadeOutputs, FusionOutputs, UserState
from service.fusion_strategy import Draws

_NO_SCORES = np.zeros(0, dtype=np.float32)
_NO_SCORES.flags.writeable = False  # shared by every fusion record


@dataclass(frozen=True)
class Scored:
    """What one bundle did with one request: everything its decision record is made of."""

    kind: DecisionKind
    request_id: str
    user_id: str
    bundle: LoadedBundle
    arm: Arm
    inputs: CascadeInputs | UserState  # a rank's whole request, or a fusion call's user state
    candidate_ids: list[str]  # empty for a request-level fusion call
    outputs: CascadeOutputs | FusionOutputs  # fusion fields: the action served (service/fusion_strategy.py)
    draws: Draws
    served_ids: list[str]
    timings: Timings
    item_table: str | None = None
    # Each candidate's row in that item table, when it was consulted: logged instead of the ids.
    table_rows: npt.NDArray[np.intp] | None = None
    # The candidate matrices the body carried, features before predictions: the record's digest covers
    # them. Rows looked up in the item table are not hashed; its version and the ids reproduce them.
    inline_matrices: tuple[F32, ...] = ()
    resact: ResActLog | None = None
    item_fusion: ItemFusionLog | None = None
    shadow_of: str | None = None


def decision_record(scored: Scored, log_candidate_features: bool) -> DecisionRecord:
    """The record of a scoring; candidate matrices are referenced by digest unless asked to be logged."""
    manifest = scored.bundle.manifest
    inputs, outputs = scored.inputs, scored.outputs
    # A rank carries the whole request and the cascade's outputs; a fusion call the user state and weights.
    request = inputs if isinstance(inputs, CascadeInputs) else None
    ranking = outputs if isinstance(outputs, CascadeOutputs) else None
    digest = hashlib.sha256()
    for matrix in scored.inline_matrices:
        digest.update(matrix.tobytes())
    logged_matrices = log_candidate_features and request is not None and ranking is not None
    rows = scored.table_rows
    candidates = CandidateLog(
        digest=digest.hexdigest(),
        # Rows of the item table are 4 bytes a candidate; its ids (often 8 to 40 characters) are in the table.
        ids=scored.candidate_ids if rows is None else [],
        rows=pack_rows(rows, table_rows=True) if rows is not None else None,  # rows_of: the table's row numbers
        item_table=scored.item_table,
        features=request.item_features if logged_matrices and request is not None else None,
        predictions=request.mtl_predictions if logged_matrices and request is not None else None,
    )
    # A fusion call runs no stage, so it has no stage to record.
    stages = []
    if ranking is not None:
        # The graph's float32 rows as they are (views, packed as bytes when encoded): no Python floats.
        survivors = ranking.stage_survivors.tolist()
        observations, actions = ranking.stage_observations, ranking.stage_actions
        stages = [
            StageLog(stage.name, stage.keep, survivors[i], observations[i], actions[i])
            for i, stage in enumerate(manifest.stages)
        ]
    user, context = inputs.user[0], inputs.context[0]
    return DecisionRecord(
        schema_version=SCHEMA_VERSION,
        request_id=scored.request_id,
        time=time.time(),
        user_id=scored.user_id,
        policy=manifest.policy,
        version=manifest.version,
        arm=scored.arm,
        k=request.k if request is not None and ranking is not None else 0,
        user_features=user,
        context=context,
        candidates=candidates,
        stages=stages,
        fusion=FusionLog(
            state=np.concatenate((user, context)),
            mean=outputs.fusion_mean[0],
            std=outputs.fusion_std[0],
            noise=scored.draws.noise[0],
            raw_action=outputs.fusion_raw_action[0],
            action=outputs.fusion_action[0],
            names=manifest.fusion.names,
        ),
        served_ids=scored.served_ids,
        served_scores=ranking.top_scores if ranking is not None else _NO_SCORES,
        log_prob=float(outputs.log_prob[0]),  # 0 for ResAct: its strategy serves a deterministic action
        novelty=float(outputs.novelty[0]),
        explored=scored.draws.explored,
        timings=scored.timings,
        shadow_of=scored.shadow_of,
        kind=scored.kind,
        resact=scored.resact,
        item_fusion=scored.item_fusion,
    )
