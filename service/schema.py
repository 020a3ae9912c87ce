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

# Ceilings the schema publishes; a deployment may lower them (Settings, service/limits.py), never raise them.
MAX_CANDIDATES = 10_000
MAX_K = 1_000
MAX_REWARD_KEYS = 64
MAX_NAME_LENGTH = 64
MAX_ID_LENGTH = 128
# A reward is a finite number of a sane magnitude; the bound also refuses NaN (it compares false).
MAX_REWARD_MAGNITUDE = 1e12

ItemId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH, description="Candidate item id")]
Row = list[float]
_CONTEXT = "Request context, manifest context_columns order: exactly context_dim values (zeros when absent)"
RewardName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
RewardValue = Annotated[float, msgspec.Meta(ge=-MAX_REWARD_MAGNITUDE, le=MAX_REWARD_MAGNITUDE)]


class User(msgspec.Struct, forbid_unknown_fields=True):
    """The requesting user."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    features: Annotated[
        Row,
        msgspec.Meta(
            max_length=4096,
            description="Observable user features, manifest user_columns order: exactly user_dim values "
            "(GET /v1/models/{policy} gives them for the active bundle)",
        ),
    ]


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

    ids: Annotated[
        list[ItemId],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_CANDIDATES,
            description="Unique candidate ids; a deployment may allow fewer (GET /v1/models/{policy}: max_candidates)",
        ),
    ]
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
    k: Annotated[
        int,
        msgspec.Meta(
            ge=1, le=MAX_K, description="How many items to return; 1 ≤ k ≤ number of candidates (and ≤ max_k)"
        ),
    ]
    context: Annotated[Row, msgspec.Meta(max_length=4096, description=_CONTEXT)] | None = None
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
    context: Annotated[Row, msgspec.Meta(max_length=4096, description=_CONTEXT)] | None = None
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

    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    rewards: Annotated[
        dict[RewardName, RewardValue],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_REWARD_KEYS,
            description="Signal name → finite value, e.g. watch_time, like; a deployment may allow fewer keys "
            "or shorter names",
        ),
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


WaitSeconds = Annotated[
    float,
    msgspec.Meta(
        ge=0.0,
        le=60.0,
        description="Answer only once every live worker serves the change, or after this many seconds "
        "(`converged` says which); 0 answers at once",
    ),
]


class ActivateRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Serve this version of the policy to everyone outside the canary."""

    version: VersionName
    wait_seconds: WaitSeconds = 0.0


class CanaryRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Route a stable share of users (by hash of their id) to a version; version null clears it."""

    version: VersionName | None
    fraction: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.0
    wait_seconds: WaitSeconds = 0.0


class ShadowRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Score every request with this version too and log it, never serve it; null clears it."""

    version: VersionName | None
    wait_seconds: WaitSeconds = 0.0


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Serve the previous version again (an empty body is the same as `{}`)."""

    wait_seconds: WaitSeconds = 0.0


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
    converged: Annotated[
        bool | None, msgspec.Meta(description="With wait_seconds: every live worker serves the change")
    ] = None
    workers: Annotated[
        dict[str, dict[str, str | float | None]] | None,
        msgspec.Meta(description="With wait_seconds: what each live worker (host:pid) serves"),
    ] = None


class RequestShape(msgspec.Struct):
    """What a valid body for this policy looks like: the active bundle's widths and this server's limits."""

    user_dim: int
    context_dim: int
    item_dim: int
    objectives: list[str]
    user_columns: list[str]
    context_columns: list[str]
    item_columns: list[str]
    stage_sizes: list[int]
    fusion_weights: Annotated[list[str], msgspec.Meta(description="Names of the fusion weights answered")]
    per_item_fusion: Annotated[bool, msgspec.Meta(description="/v1/fusion accepts candidates")]
    max_candidates: int
    max_k: int
    max_reward_keys: int
    max_name_length: int


class PolicyDetail(msgspec.Struct):
    """One policy: its routing, what the answering worker serves, and the request shape it accepts."""

    status: PolicyStatus
    request: Annotated[
        RequestShape | None, msgspec.Meta(description="Null while this worker has no bundle of it loaded")
    ]


class ItemTableStatus(msgspec.Struct):
    """The item table routing shared by all workers (a worker's own table is in /readyz)."""

    active: str | None
    previous: str | None
    revision: int


class ModelsResponse(msgspec.Struct):
    policies: list[PolicyStatus]
