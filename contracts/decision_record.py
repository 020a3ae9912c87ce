"""The decision record contract (DESIGN.md): one per served request, in a Redis Stream.

The service produces it; the trainer and off-policy evaluation consume it by importing this
module. It holds what the policy saw (each actor's state), what it did (each action, the
latent draws, the propensity) and what it served, so a request can be evaluated or trained on
without the service, and replayed exactly through the same bundle version.
"""

from __future__ import annotations

from typing import Literal

import msgspec

SCHEMA_VERSION = 1
STREAM_FIELD = b"d"  # the stream entry's single field; its value is the record as JSON

# "control" (the active version), "canary", or "shadow" (scored and logged, never served).
Arm = Literal["control", "canary", "shadow"]
# "rank" (/v1/rank) or "fusion" (/v1/fusion: no stages, weights only).
DecisionKind = Literal["rank", "fusion"]


class Timings(msgspec.Struct):
    decode_ms: float
    compute_ms: float
    total_ms: float


class CandidateLog(msgspec.Struct):
    """The request's candidates: ids always; the matrices only when the service is told to log them."""

    ids: list[str]
    # sha256 of the matrices the body carried (features ‖ predictions, little-endian float32 bytes);
    # a matrix taken from the item table is left out: `item_table` and the ids reproduce it.
    digest: str
    features: list[list[float]] | None = None
    predictions: list[list[float]] | None = None
    item_table: str | None = None  # version of the item table rows were looked up in, when not sent inline


class StageLog(msgspec.Struct):
    name: str
    keep: int  # the stage size the manifest asked for
    survivors: int  # how many it kept for this request
    observation: list[float]  # what the stage actor saw (user ⊕ context ⊕ mean input features)
    action: list[float]  # the stage actor's head weights


class FusionLog(msgspec.Struct):
    state: list[float]  # user ⊕ context: the fusion actor's input
    mean: list[float]
    std: list[float]
    noise: list[float]  # the latent draws fed to the graph; zeros when not exploring
    raw_action: list[float]  # mean + std·noise
    action: list[float]  # clipped to the manifest bounds: the weights served
    names: list[str]


class ResActLog(msgspec.Struct):
    """A ResAct decision (seed 004): replay it by feeding `latents` to the bundle's resact graph."""

    latents: list[list[float]]  # [n_draws, latent_dim] the standard-normal draws fed to the graph
    candidates: list[list[float]]  # [n_draws, A] the reconstructed-and-improved actions
    q: list[float]  # Q1 of each candidate
    choice: int  # the served candidate (argmax q)
    action: list[float]  # the served fusion action


class ItemFusionLog(msgspec.Struct):
    """Per-item fusion weights (EnhancedRL, seed 003), row i ↔ candidates.ids[i]."""

    noise: list[list[float]]  # [N, A] exploration draws fed to the graph; zeros when not exploring
    mean: list[list[float]]  # [N, A]
    actions: list[list[float]]  # [N, A] the weights served


class DecisionRecord(msgspec.Struct):
    schema_version: int
    request_id: str
    time: float  # seconds since the epoch, UTC
    user_id: str
    policy: str
    version: str
    arm: Arm
    k: int
    user_features: list[float]
    context: list[float]
    candidates: CandidateLog
    stages: list[StageLog]
    fusion: FusionLog
    served_ids: list[str]
    served_scores: list[float]
    log_prob: float  # log π(raw action | state) under the serving policy, unrounded
    novelty: float  # RND bonus of the fusion state
    explored: bool
    timings: Timings
    shadow_of: str | None = None  # on a shadow record: the request id of the decision actually served
    kind: DecisionKind = "rank"
    # Served by a bundle's ResAct actor (/v1/fusion, and /v1/rank through its rank_by_action graph): its draws
    # and choice. `log_prob` is then 0: the action is a deterministic function of the logged draws (an
    # argmax), not a sample with a density. On a ResAct rank, `fusion` holds that action as mean, raw_action
    # and action, with std and noise 0, and `explored` is false.
    resact: ResActLog | None = None
    item_fusion: ItemFusionLog | None = None  # /v1/fusion with candidates: per-item weights


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(DecisionRecord)


def encode(record: DecisionRecord) -> bytes:
    """JSON bytes of a record, as stored in the stream field."""
    return _encoder.encode(record)


def decode(data: bytes) -> DecisionRecord:
    """Parse a stored record; raises msgspec.ValidationError if it does not match the contract."""
    return _decoder.decode(data)
