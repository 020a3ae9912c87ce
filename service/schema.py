"""The HTTP schema of /v1: one declaration, used both to decode bodies and to publish openapi.yaml.

msgspec Structs decode straight from bytes with exact types, reject unknown fields and report
the path of a bad value, at a fraction of the cost of pydantic models per candidate row
(DESIGN.md, "Known traps").
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.decision_record import Timings
from contracts.versions import VERSION_PATTERN

ItemId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, description="Candidate item id")]
Row = list[float]


class User(msgspec.Struct, forbid_unknown_fields=True):
    """The requesting user."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    features: Annotated[Row, msgspec.Meta(description="Observable user features, manifest user_columns order")]


class Tensor(msgspec.Struct, forbid_unknown_fields=True):
    """A matrix as raw little-endian float32 bytes, row-major (base64 in JSON, a bin value in msgpack).

    Skips parsing one number per value: the body carries the bytes the graph reads (the idea of
    Triton's binary tensor extension).
    """

    shape: Annotated[list[int], msgspec.Meta(min_length=2, max_length=2, description="[rows, columns]")]
    data: Annotated[bytes, msgspec.Meta(description="rows × columns little-endian float32 values")]
    dtype: Literal["float32"] = "float32"


Matrix = list[Row] | Tensor


class Candidates(msgspec.Struct, forbid_unknown_fields=True):
    """Candidate items, row i ↔ ids[i]. Rows not sent are looked up by id in the service's item table."""

    ids: list[ItemId]
    features: (
        Annotated[Matrix, msgspec.Meta(description="One row per candidate, manifest item_columns order")] | None
    ) = None
    predictions: (
        Annotated[
            Matrix,
            msgspec.Meta(description="One row per candidate, manifest objectives order (MTL predictions)"),
        ]
        | None
    ) = None


class RankRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Rank candidates for one user request through the cascade."""

    user: User
    candidates: Candidates
    k: Annotated[int, msgspec.Meta(description="How many items to return; 1 ≤ k ≤ number of candidates")]
    context: Annotated[Row, msgspec.Meta(description="Request context, manifest context_columns order")] | None = None
    policy: Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="Policy to serve")] | None = None


class RankedItem(msgspec.Struct):
    id: str
    score: float


class StageSurvivors(msgspec.Struct):
    matching: int
    pre_ranking: int
    ranking: int


class RankResponse(msgspec.Struct):
    """The served ranking, and what produced it."""

    request_id: str
    policy: str
    version: str
    arm: Annotated[str, msgspec.Meta(description="control (active version) or canary")]
    items: list[RankedItem]
    fusion_weights: Annotated[
        dict[str, float],
        msgspec.Meta(description="The weights the items were ranked with: the bundle's ResAct action if it has one"),
    ]
    stage_survivors: StageSurvivors
    explored: Annotated[bool, msgspec.Meta(description="The fusion actor explored (always false under ResAct)")]
    novelty: float
    log_prob: Annotated[
        float,
        msgspec.Meta(description="log π(action | state); 0 under ResAct, a deterministic function of logged draws"),
    ]
    timings: Timings


class FusionRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Ask for the fusion weights alone: request-level from the user state, or per item with candidates."""

    user: User
    context: Annotated[Row, msgspec.Meta(description="Request context, manifest context_columns order")] | None = None
    candidates: (
        Annotated[
            Candidates,
            msgspec.Meta(description="Per-item weights for these items; needs a bundle with a per-item fusion actor"),
        ]
        | None
    ) = None
    policy: Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="Policy to serve")] | None = None


class ItemWeights(msgspec.Struct):
    id: str
    weights: dict[str, float]


class FusionResponse(msgspec.Struct):
    """Fusion weights (power w_j and bias b_j per objective: score = Π_j (p_j + b_j)^w_j) and what produced them."""

    request_id: str
    policy: str
    version: str
    arm: Annotated[str, msgspec.Meta(description="control (active version) or canary")]
    weights: Annotated[dict[str, float], msgspec.Meta(description="Request-level weights")]
    explored: bool
    novelty: float
    log_prob: float
    timings: Timings
    items: Annotated[list[ItemWeights], msgspec.Meta(description="Per-item weights, with candidates")] | None = None


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Reward signals for one served request (optionally one of its items)."""

    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    rewards: Annotated[
        dict[str, float], msgspec.Meta(min_length=1, description="Signal name → value, e.g. watch_time, like")
    ]
    item_id: ItemId | None = None
    event_id: (
        Annotated[str, msgspec.Meta(max_length=128, description="Client id of this event; a retry is stored once")]
        | None
    ) = None


class FeedbackAccepted(msgspec.Struct):
    """202 accepted or late (stored; a late event is not joined to the reward); 200 duplicate (stored before)."""

    request_id: str
    duplicate: bool
    status: Annotated[
        Literal["accepted", "late", "duplicate"],
        msgspec.Meta(description="accepted: within the reward window; late: after it; duplicate: seen before"),
    ]


class ReadyState(msgspec.Struct):
    ready: bool
    policy: str
    version: str | None
    redis: str
    decision_log: dict[str, int | str]
    detail: str | None = None
    item_table: Annotated[str | None, msgspec.Meta(description="Item table version served, if any")] = None
    item_table_error: str | None = None


class Health(msgspec.Struct):
    status: str


VersionName = Annotated[str, msgspec.Meta(pattern=VERSION_PATTERN)]


class ActivateRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Serve this version of the policy to everyone outside the canary."""

    version: VersionName


class CanaryRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Route a stable share of users (by hash of their id) to a version; version null clears it."""

    version: VersionName | None
    fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0


class ShadowRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Score every request with this version too and log it, never serve it; null clears it."""

    version: VersionName | None


class PolicyStatus(msgspec.Struct):
    """A policy's routing (shared by all workers) and what the answering worker serves."""

    policy: str
    revision: int
    active: str | None
    previous: str | None
    canary: str | None
    canary_fraction: float
    shadow: str | None
    worker_pid: int
    worker_serving: dict[str, str | float | None] | None
    on_disk: list[str]
    error: str | None = None


class ItemTableStatus(msgspec.Struct):
    """The item table routing shared by all workers (a worker's own table is in /readyz)."""

    active: str | None
    previous: str | None
    revision: int


class ModelsResponse(msgspec.Struct):
    policies: list[PolicyStatus]
