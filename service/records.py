"""Building a decision record (contracts/decision_record.py) from one scoring of one request."""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from contracts.decision_record import (
    SCHEMA_VERSION,
    Arm,
    CandidateLog,
    DecisionKind,
    ItemFusionLog,
    PackedRecord,
    ResActLog,
    Timings,
    pack_rows,
)
from contracts.packed_floats import joined
from service.bundle import LoadedBundle
from service.cascade import F32, CascadeInputs, CascadeOutputs, FusionOutputs, UserState
from service.fusion_strategy import Draws

_NO_SCORES = np.zeros(0, dtype=np.float32)
_NO_SCORES.flags.writeable = False  # the served scores of every fusion record


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


# The sha256 of no bytes: the digest of a request whose candidate matrices all came from the item table.
_EMPTY_DIGEST = hashlib.sha256().hexdigest()


class _Layout:
    """What every record of one bundle, kind and served-list length shares: the stages' names and sizes and
    the float vectors' lengths (fixed by the bundle's feature schema and its graphs' output widths, which
    its loader checked; the record's encoder checks them against the buffer)."""

    def __init__(self, bundle: LoadedBundle, outputs: CascadeOutputs | FusionOutputs, served: int) -> None:
        manifest = bundle.manifest
        u, c = manifest.feature_schema.user_dim, manifest.feature_schema.context_dim
        # A weak reference: the cache must not keep a swapped-out bundle's sessions alive (service/registry.py
        # drops them), and a dead one never matches a new bundle that happens to get the same id.
        self.bundle = weakref.ref(bundle)
        self.heads: list[tuple[str, int]] = []
        self.lengths = [u, c, served, u + c, *[outputs.fusion_action.shape[1]] * 5]
        if isinstance(outputs, CascadeOutputs):  # a fusion call runs no stage, so it has no stage to record
            self.heads = [(stage.name, stage.keep) for stage in manifest.stages]
            stages = len(self.heads)
            self.lengths += [outputs.stage_observations.shape[1]] * stages + [outputs.stage_actions.shape[1]] * stages


# Layouts by (bundle identity, served length, rank or fusion): a handful per loaded bundle.
_layouts: dict[tuple[int, int, bool], _Layout] = {}


def _layout(bundle: LoadedBundle, outputs: CascadeOutputs | FusionOutputs, served: int) -> _Layout:
    key = (id(bundle), served, isinstance(outputs, CascadeOutputs))
    layout = _layouts.get(key)
    if layout is None or layout.bundle() is not bundle:
        if len(_layouts) > 64:  # bundles hot-swapped out over a long life: start again
            _layouts.clear()
        layout = _layouts[key] = _Layout(bundle, outputs, served)
    return layout


def packed_record(scored: Scored, log_candidate_features: bool, decided: float) -> PackedRecord:
    """The record of a scoring in its stored form: every float vector copied once into one float32 buffer
    (contracts/decision_record.py, PackedRecord); candidate matrices are referenced by digest unless asked
    to be logged. `decided`: when it was answered (epoch seconds). Every request runs this (kept lean: the
    per-bundle parts come from a cached layout, which the record's encoder checks against the buffer)."""
    bundle = scored.bundle
    manifest = bundle.manifest
    inputs, outputs = scored.inputs, scored.outputs
    # A rank carries the whole request and the cascade's outputs; a fusion call the user state and weights.
    ranking = outputs if isinstance(outputs, CascadeOutputs) else None
    request = inputs if ranking is not None and isinstance(inputs, CascadeInputs) else None
    digest = _EMPTY_DIGEST
    if scored.inline_matrices:
        hashed = hashlib.sha256()
        for matrix in scored.inline_matrices:
            hashed.update(matrix.tobytes())
        digest = hashed.hexdigest()
    logged_matrices = log_candidate_features and request is not None
    rows = scored.table_rows
    candidates = CandidateLog(
        digest=digest,
        # Rows of the item table are 4 bytes a candidate; its ids (often 8 to 40 characters) are in the table.
        ids=scored.candidate_ids if rows is None else [],
        rows=pack_rows(rows, table_rows=True) if rows is not None else None,  # rows_of: the table's row numbers
        item_table=scored.item_table,
        features=request.item_features if logged_matrices and request is not None else None,
        predictions=request.mtl_predictions if logged_matrices and request is not None else None,
    )
    user, context = inputs.user, inputs.context  # [1, U], [1, C]
    draws = scored.draws
    # PackedRecord.floats in its documented order: the float32 arrays the graph took and gave, as they are
    # (the bundle loader checked the graph's output types against the contract); the fusion actor's state
    # is user ⊕ context.
    served = ranking.top_scores if ranking is not None else _NO_SCORES
    parts = [user, context, served, user, context, outputs.fusion_mean, outputs.fusion_std, draws.noise]
    parts += (outputs.fusion_raw_action, outputs.fusion_action)
    layout = _layout(bundle, outputs, len(served))
    stages: list[tuple[str, int, int]] = []
    if ranking is not None:  # a fusion call runs no stage, so it has no stage to record
        survivors = ranking.stage_survivors.tolist()
        stages = [(name, keep, n) for (name, keep), n in zip(layout.heads, survivors, strict=True)]
        parts += (ranking.stage_observations, ranking.stage_actions)
    timings = scored.timings
    return PackedRecord(
        schema_version=SCHEMA_VERSION,
        request_id=scored.request_id,
        time=decided,
        user_id=scored.user_id,
        policy=manifest.policy,
        version=manifest.version,
        arm=scored.arm,
        kind=scored.kind,
        k=request.k if request is not None else 0,
        log_prob=outputs.log_prob.item(),  # 0 for ResAct: its strategy serves a deterministic action
        novelty=outputs.novelty.item(),
        explored=draws.explored,
        timings=(timings.decode_ms, timings.compute_ms, timings.total_ms),
        shadow_of=scored.shadow_of,
        candidates=candidates,
        stages=stages,
        names=manifest.fusion.names,
        served_ids=scored.served_ids,
        lengths=layout.lengths,
        floats=joined(parts),
        resact=scored.resact,
        item_fusion=scored.item_fusion,
    )
