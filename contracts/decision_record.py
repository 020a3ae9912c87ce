"""The decision record contract (DESIGN.md): one per served request, in a Redis Stream, then the lake.

The service produces it; the archiver, the trainer and off-policy evaluation consume it by importing
this module. It holds what the policy saw (each actor's state), what it did (each action, the latent
draws, the propensity) and what it served, so a request can be evaluated or trained on without the
service, and replayed exactly through the same bundle version.

One contract for both sides: `encode` refuses exactly what `decode` rejects (`validate` is the rule),
so a record the service wrote always reads back, and a reader never meets a record the service could
not have written. The rule includes: every float is finite (a NaN or an infinity in a propensity or a
state poisons every estimator that reads it), list lengths agree, and packed candidate rows are whole
uint32 values of a named item table.

Compactness: candidates looked up in the item table are logged as that table's version plus their
row indices packed as little-endian uint32 bytes (`rows`), not as id strings; `candidate_ids`
resolves them through the table's ids. Every float vector and matrix (states, actions, draws, scores;
all float32 in the serving graphs) is a float32 numpy array, stored as packed little-endian float32
bytes (contracts/packed_floats.py); scalars (time, log_prob, novelty, timings) stay float64. The
stored bytes are msgpack. Older records still decode into the same arrays: schema version 1 (JSON,
ids as strings, floats as lists), 2 (msgpack, floats as lists) and 3 (a msgpack map, each float
vector its own packed bytes).

Schema 4, what the service writes, is a msgpack array (`PackedRecord`): the scalars in a fixed order,
and every float vector of the record (states, actions, draws, served scores, stage observations and
actions) in one packed float32 buffer with the vectors' lengths beside it. A serving worker builds it
from the graph's outputs with one concatenation and checks it with one finiteness pass, instead of a
struct per part and an array each; it decodes into the same `DecisionRecord`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NoReturn

import msgspec
import numpy as np
import numpy.typing as npt

from contracts.packed_floats import DTYPE, Matrix, Vector, dec_hook, enc_hook, to_lists

# 4: a msgpack array, the float vectors in one packed buffer (PackedRecord); 3: a map, each float
# vector and matrix its own packed float32 bytes; 2: msgpack with float lists; 1: JSON.
SCHEMA_VERSION = 4
STREAM_FIELD = b"d"  # the stream entry's single field; its value is the encoded record
ROW_DTYPE = np.dtype("<u4")  # packed candidate rows: little-endian uint32, one per candidate

# "control" (the active version), "canary", or "shadow" (scored and logged, never served).
Arm = Literal["control", "canary", "shadow"]
# "rank" (/v1/rank) or "fusion" (/v1/fusion: no stages, weights only).
DecisionKind = Literal["rank", "fusion"]


class Timings(msgspec.Struct):
    decode_ms: float
    compute_ms: float
    total_ms: float


class CandidateLog(msgspec.Struct):
    """The request's candidates: item-table rows or ids; the matrices only when the service logs them."""

    # sha256 of the matrices the body carried (features ‖ predictions, little-endian float32 bytes);
    # a matrix taken from the item table is left out: `item_table` and the rows reproduce it.
    digest: str
    # The candidate ids as sent, when the table was not used; empty when `rows` names them.
    ids: list[str] = msgspec.field(default_factory=list)
    features: Matrix | None = None  # [N, item_dim]
    predictions: Matrix | None = None  # [N, objectives]
    item_table: str | None = None  # version of the item table rows were looked up in, when not sent inline
    # Candidate i is row rows[i] of `item_table` (ROW_DTYPE bytes), when its rows came from the table.
    rows: bytes | None = None

    @property
    def count(self) -> int:
        """How many candidates the request had."""
        return len(self.rows) // ROW_DTYPE.itemsize if self.rows is not None else len(self.ids)


class StageLog(msgspec.Struct):
    name: str
    keep: int  # the stage size the manifest asked for
    survivors: int  # how many it kept for this request
    observation: Vector  # what the stage actor saw (user ⊕ context ⊕ mean input features)
    action: Vector  # the stage actor's head weights


class FusionLog(msgspec.Struct):
    state: Vector  # user ⊕ context: the fusion actor's input
    mean: Vector
    std: Vector
    noise: Vector  # the latent draws fed to the graph; zeros when not exploring
    raw_action: Vector  # mean + std·noise
    action: Vector  # clipped to the manifest bounds: the weights served
    names: list[str]


class ResActLog(msgspec.Struct):
    """A ResAct decision (seed 004): replay it by feeding `latents` to the bundle's resact graph."""

    latents: Matrix  # [n_draws, latent_dim] the standard-normal draws fed to the graph
    candidates: Matrix  # [n_draws, A] the reconstructed-and-improved actions
    q: Vector  # Q1 of each candidate
    choice: int  # the served candidate (argmax q)
    action: Vector  # the served fusion action


class ItemFusionLog(msgspec.Struct):
    """Per-item fusion weights (EnhancedRL, seed 003), row i ↔ candidate i."""

    noise: Matrix  # [N, A] exploration draws fed to the graph; zeros when not exploring
    mean: Matrix  # [N, A]
    actions: Matrix  # [N, A] the weights served


class DecisionRecord(msgspec.Struct):
    schema_version: int
    request_id: str
    time: float  # seconds since the epoch, UTC
    user_id: str
    policy: str
    version: str
    arm: Arm
    k: int
    user_features: Vector
    context: Vector
    candidates: CandidateLog
    stages: list[StageLog]
    fusion: FusionLog
    served_ids: list[str]
    served_scores: Vector
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


class PackedRecord(msgspec.Struct, array_like=True):
    """A decision record as schema 4 stores it: a msgpack array, its float vectors in one buffer.

    `floats` holds, as packed float32 and in this order, user_features, context, served_scores, then
    fusion state, mean, std, noise, raw_action and action, then every stage's observation, then every
    stage's action; `lengths` gives each one's length (9 + 2 per stage). The rarer parts (ResAct,
    per-item fusion, logged candidate matrices) keep their own packed fields."""

    schema_version: int
    request_id: str
    time: float
    user_id: str
    policy: str
    version: str
    arm: Arm
    kind: DecisionKind
    k: int
    log_prob: float
    novelty: float
    explored: bool
    timings: tuple[float, float, float]  # decode_ms, compute_ms, total_ms
    shadow_of: str | None
    candidates: CandidateLog
    stages: list[tuple[str, int, int]]  # name, keep, survivors
    names: list[str]  # the fusion action's names
    served_ids: list[str]
    lengths: list[int]
    floats: bytes
    resact: ResActLog | None = None
    item_fusion: ItemFusionLog | None = None


_FIXED_VECTORS = 9  # the vectors before the stages' in `PackedRecord.floats`
_SERVED, _ACTION = 2, 8  # positions of served_scores and fusion.action among them
_HEX64 = re.compile(r"[0-9a-f]{64}")
_encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
_decoder = msgspec.msgpack.Decoder(DecisionRecord, dec_hook=dec_hook)  # schema 2 and 3: a msgpack map
_packed_decoder = msgspec.msgpack.Decoder(PackedRecord, dec_hook=dec_hook)
_json_decoder = msgspec.json.Decoder(DecisionRecord, dec_hook=dec_hook)  # schema version 1 records


def encode(record: DecisionRecord) -> bytes:
    """The stored bytes of a record; raises msgspec.ValidationError for a record `decode` would reject."""
    validate(record)
    return _encoder.encode(pack(record))


def encode_packed(record: PackedRecord) -> bytes:
    """The stored bytes of a record built packed (the serving path); raises msgspec.ValidationError for one
    `decode` would reject, naming the field as `encode` would."""
    data = encoded_if_valid(record)
    if data is None:
        validate(unpack(record))  # names the field
        _fail("floats", "the vectors do not match the record")  # not reached: _packed_ok is validate's rule
    return data


def encoded_if_valid(record: PackedRecord) -> bytes | None:
    """`encode_packed` without the error: None for a record `decode` would reject. The service asks this
    first, because its check covers every float output of the graph: a None then means a non-finite output
    (a 422 naming the input) far more often than a bug (encode_packed names the field)."""
    return _encoder.encode(record) if _packed_ok(record) else None


def decode(data: bytes) -> DecisionRecord:
    """Parse a stored record; raises msgspec.ValidationError (or DecodeError) unless it meets the contract."""
    first = data[:1]
    if first == b"{":  # schema 1: a JSON object
        record = _json_decoder.decode(data)
    elif first and (0x90 <= first[0] <= 0x9F or first[0] in (0xDC, 0xDD)):  # schema 4: a msgpack array
        packed = _decode_packed(data)
        if _packed_ok(packed):
            return unpack(packed)
        record = unpack(packed)  # validate names the field below
    else:  # schemas 2 and 3: a msgpack map (0x8_, 0xDE, 0xDF)
        record = _decoder.decode(data)
    validate(record)
    return record


_POSITION = re.compile(r"`\$\[(\d+)\]")


def _decode_packed(data: bytes) -> PackedRecord:
    """msgspec's decode of the array form, its errors naming the field (`$.novelty`), not the position."""
    try:
        return _packed_decoder.decode(data)
    except msgspec.ValidationError as error:
        fields = PackedRecord.__struct_fields__

        def named(match: re.Match[str]) -> str:
            position = int(match.group(1))
            return f"`$.{fields[position]}" if position < len(fields) else match.group(0)

        raise msgspec.ValidationError(_POSITION.sub(named, str(error), count=1)) from None


def pack(record: DecisionRecord) -> PackedRecord:
    """A record in its stored schema-4 form (the vectors must be float32 arrays: `validate` first)."""
    fusion, timings = record.fusion, record.timings
    vectors = _vectors(record)
    return PackedRecord(
        schema_version=record.schema_version,
        request_id=record.request_id,
        time=record.time,
        user_id=record.user_id,
        policy=record.policy,
        version=record.version,
        arm=record.arm,
        kind=record.kind,
        k=record.k,
        log_prob=record.log_prob,
        novelty=record.novelty,
        explored=record.explored,
        timings=(timings.decode_ms, timings.compute_ms, timings.total_ms),
        shadow_of=record.shadow_of,
        candidates=record.candidates,
        stages=[(stage.name, stage.keep, stage.survivors) for stage in record.stages],
        names=fusion.names,
        served_ids=record.served_ids,
        lengths=[len(vector) for vector in vectors],
        floats=np.concatenate(vectors, dtype=DTYPE, casting="no").tobytes(),
        resact=record.resact,
        item_fusion=record.item_fusion,
    )


def unpack(packed: PackedRecord) -> DecisionRecord:
    """The record a packed one holds, its vectors views of one read-only float32 buffer; raises
    msgspec.ValidationError when `lengths` do not describe `floats` for its stages."""
    lengths = packed.lengths
    if len(lengths) != _FIXED_VECTORS + 2 * len(packed.stages):
        _fail("lengths", f"must give {_FIXED_VECTORS} + 2 per stage vector lengths, got {len(lengths)}")
    if len(packed.floats) % DTYPE.itemsize:
        _fail("floats", f"packed float32 bytes must be a multiple of {DTYPE.itemsize} long")
    values = np.frombuffer(packed.floats, dtype=DTYPE)
    if min(lengths, default=0) < 0 or sum(lengths) != len(values):
        _fail("lengths", f"must add up to the {len(values)} values of `floats`")
    ends = np.cumsum(lengths).tolist()
    v = [values[end - length : end] for end, length in zip(ends, lengths, strict=True)]
    count = len(packed.stages)
    stages = [
        StageLog(name, keep, survivors, v[_FIXED_VECTORS + i], v[_FIXED_VECTORS + count + i])
        for i, (name, keep, survivors) in enumerate(packed.stages)
    ]
    decode_ms, compute_ms, total_ms = packed.timings
    return DecisionRecord(
        schema_version=packed.schema_version,
        request_id=packed.request_id,
        time=packed.time,
        user_id=packed.user_id,
        policy=packed.policy,
        version=packed.version,
        arm=packed.arm,
        k=packed.k,
        user_features=v[0],
        context=v[1],
        candidates=packed.candidates,
        stages=stages,
        fusion=FusionLog(v[3], v[4], v[5], v[6], v[7], v[8], packed.names),
        served_ids=packed.served_ids,
        served_scores=v[_SERVED],
        log_prob=packed.log_prob,
        novelty=packed.novelty,
        explored=packed.explored,
        timings=Timings(decode_ms, compute_ms, total_ms),
        shadow_of=packed.shadow_of,
        kind=packed.kind,
        resact=packed.resact,
        item_fusion=packed.item_fusion,
    )


def _packed_ok(packed: PackedRecord) -> bool:
    """`validate(unpack(packed))` would pass: the same rule, checked on the packed form without building
    the record (one finiteness pass over `floats`); False for anything it would refuse."""
    lengths, floats = packed.lengths, packed.floats
    if (
        not 1 <= packed.schema_version <= SCHEMA_VERSION
        or len(lengths) != _FIXED_VECTORS + 2 * len(packed.stages)
        or len(floats) % DTYPE.itemsize
        or min(lengths) < 0
        or sum(lengths) * DTYPE.itemsize != len(floats)
        or packed.k < 0
        or lengths[_SERVED] != len(packed.served_ids)
        or lengths[_ACTION] != len(packed.names)
    ):
        return False
    scalars = (packed.time, packed.log_prob, packed.novelty, *packed.timings)
    if not math.isfinite(sum(scalars)) and not all(math.isfinite(value) for value in scalars):
        return False
    if not np.isfinite(np.frombuffer(floats, dtype=DTYPE)).all():
        return False
    candidates, resact, item = packed.candidates, packed.resact, packed.item_fusion
    if resact is not None or item is not None or candidates.features is not None or candidates.predictions is not None:
        return _valid(unpack(packed))  # the rarer parts: the record's own rule
    # _candidates' rule without matrices, inline: this runs once per served request.
    rows = candidates.rows
    if rows is not None and (candidates.item_table is None or len(rows) % ROW_DTYPE.itemsize or candidates.ids):
        return False
    return _HEX64.fullmatch(candidates.digest) is not None


def _valid(record: DecisionRecord) -> bool:
    try:
        validate(record)
    except msgspec.ValidationError:
        return False
    return True


def validate(record: DecisionRecord) -> None:
    """Raise msgspec.ValidationError naming the first field that breaks the contract."""
    if not 1 <= record.schema_version <= SCHEMA_VERSION:
        _fail("schema_version", f"unknown schema version {record.schema_version}")
    timings = record.timings
    # One C-level sum of the scalars: finite exactly when every term is (or when no partial sum
    # overflows float64; an overflowing record takes the field-by-field path and passes it).
    if not math.isfinite(
        record.time + record.log_prob + record.novelty + timings.decode_ms + timings.compute_ms + timings.total_ms
    ):
        for field, value in _scalars(record):
            if not math.isfinite(value):
                _fail(field, f"must be finite, got {value}")
    vectors, matrices = _arrays(record)
    # One concatenation and one ufunc pass over every value: the concatenation refuses anything but
    # float32 arrays of one rank (casting="no": not even a float16 or a big-endian one is cast), and a
    # float32 value cannot overflow into a false alarm, as a sum could.
    try:
        if not all(type(m) is np.ndarray and m.ndim == 2 for m in matrices):
            raise TypeError("not a matrix")
        parts = [*vectors, *(m.reshape(-1) for m in matrices)] if matrices else vectors
        values = np.concatenate(parts, dtype=DTYPE, casting="no")
        if values.ndim != 1 or not np.isfinite(values).all():
            raise ValueError("not finite vectors")
    except (TypeError, ValueError):
        _array_fields(record)  # names the first array of the wrong kind, or the first non-finite value
    _shapes(record)


def _scalars(record: DecisionRecord) -> Iterator[tuple[str, float]]:
    yield "time", record.time
    yield "log_prob", record.log_prob
    yield "novelty", record.novelty
    for name in ("decode_ms", "compute_ms", "total_ms"):
        yield f"timings.{name}", getattr(record.timings, name)


def _vectors(record: DecisionRecord) -> list[Any]:
    """The record's float vectors in `PackedRecord.floats` order (ResAct's own vectors apart)."""
    fusion = record.fusion
    vectors: list[Any] = [
        record.user_features,
        record.context,
        record.served_scores,
        fusion.state,
        fusion.mean,
        fusion.std,
        fusion.noise,
        fusion.raw_action,
        fusion.action,
    ]
    return vectors + [stage.observation for stage in record.stages] + [stage.action for stage in record.stages]


def _arrays(record: DecisionRecord) -> tuple[list[Any], list[Any]]:
    """The vectors and the matrices of a record, without their names (the common case: all is well)."""
    candidates = record.candidates
    vectors: list[Any] = _vectors(record)
    matrices: list[Any] = [m for m in (candidates.features, candidates.predictions) if m is not None]
    if (resact := record.resact) is not None:
        vectors += (resact.q, resact.action)
        matrices += (resact.latents, resact.candidates)
    if (item := record.item_fusion) is not None:
        matrices += (item.noise, item.mean, item.actions)
    return vectors, matrices


def _named_arrays(record: DecisionRecord) -> Iterator[tuple[str, Any, int]]:
    """(field, array, rank) of every float array of a record."""
    yield "user_features", record.user_features, 1
    yield "context", record.context, 1
    yield "served_scores", record.served_scores, 1
    for name in ("state", "mean", "std", "noise", "raw_action", "action"):
        yield f"fusion.{name}", getattr(record.fusion, name), 1
    for i, stage in enumerate(record.stages):
        yield f"stages[{i}].observation", stage.observation, 1
        yield f"stages[{i}].action", stage.action, 1
    for name in ("features", "predictions"):
        if (matrix := getattr(record.candidates, name)) is not None:
            yield f"candidates.{name}", matrix, 2
    if (resact := record.resact) is not None:
        yield "resact.latents", resact.latents, 2
        yield "resact.candidates", resact.candidates, 2
        yield "resact.q", resact.q, 1
        yield "resact.action", resact.action, 1
    if record.item_fusion is not None:
        for name in ("noise", "mean", "actions"):
            yield f"item_fusion.{name}", getattr(record.item_fusion, name), 2


def _array_fields(record: DecisionRecord) -> None:
    for field, array, rank in _named_arrays(record):
        if type(array) is not np.ndarray or array.dtype != DTYPE or array.ndim != rank:
            kind = f"{type(array).__name__} of {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
            _fail(field, f"must be a {rank}-D float32 numpy array, got a {kind}")
        bad = np.flatnonzero(~np.isfinite(array.reshape(-1)))
        if bad.size:
            index = np.unravel_index(int(bad[0]), array.shape)
            _fail(field + "".join(f"[{i}]" for i in index), f"must be finite, got {array[index]}")


def _shapes(record: DecisionRecord) -> None:
    if record.k < 0:
        _fail("k", "must not be negative")
    if len(record.served_scores) != len(record.served_ids):
        _fail("served_scores", "must have one score per served id")
    _candidates(record.candidates)
    if len(record.fusion.action) != len(record.fusion.names):
        _fail("fusion.action", "must have one value per action name")
    if record.resact is not None and not 0 <= record.resact.choice < max(len(record.resact.q), 1):
        _fail("resact.choice", "must index one of the candidates")
    if record.item_fusion is not None:
        for name in ("noise", "mean", "actions"):
            if len(getattr(record.item_fusion, name)) != record.candidates.count:
                _fail(f"item_fusion.{name}", "must have one row per candidate")


def pack_rows(rows: npt.ArrayLike, *, table_rows: bool = False) -> bytes:
    """Item-table row indices as the record's `rows` bytes (little-endian uint32).

    `table_rows`: the caller took `rows` from the item table's own row numbers (0 to its length − 1,
    far below 2³²), so the per-element range check is skipped: at N = 5,000 it cost 7 µs of the
    8.6 µs this takes per record, for values that cannot be out of range."""
    array = np.asarray(rows)
    if table_rows:
        return array.astype(ROW_DTYPE, copy=False).tobytes()
    packed = array.astype(ROW_DTYPE, copy=False)
    # One comparison instead of a min and a max: a negative or too large index does not survive the cast.
    if array.size and not np.array_equal(packed, array):
        raise ValueError("row indices must fit in uint32")
    return packed.tobytes()


def unpack_rows(data: bytes) -> npt.NDArray[np.uint32]:
    """The row indices a record's `rows` bytes hold, in candidate order."""
    return np.frombuffer(data, dtype=ROW_DTYPE)


def candidate_ids(candidates: CandidateLog, table_ids: Sequence[str] | None = None) -> list[str]:
    """The candidate ids of a record: as logged, or resolved through the ids (row order) of the item table
    version `candidates.item_table` names (contracts/item_table.py, `ItemTable.ids`)."""
    if candidates.rows is None:
        return list(candidates.ids)
    if table_ids is None:
        raise ValueError(f"candidates are rows of item table {candidates.item_table}: pass that table's ids")
    rows = unpack_rows(candidates.rows)
    if rows.size and int(rows.max()) >= len(table_ids):
        raise ValueError(f"row {int(rows.max())} is beyond the {len(table_ids)} ids given")
    return [table_ids[row] for row in rows.tolist()]


def _candidates(candidates: CandidateLog) -> None:
    if _HEX64.fullmatch(candidates.digest) is None:
        _fail("candidates.digest", "must be a sha256 hex digest")
    if candidates.rows is not None:
        if candidates.item_table is None:
            _fail("candidates.rows", "rows need the item table version they index")
        if len(candidates.rows) % ROW_DTYPE.itemsize:
            _fail("candidates.rows", f"must be whole {ROW_DTYPE.itemsize}-byte row indices")
        if candidates.ids:
            _fail("candidates.ids", "rows and ids are exclusive")
    for name in ("features", "predictions"):
        matrix = getattr(candidates, name)
        if matrix is not None and len(matrix) != candidates.count:
            _fail(f"candidates.{name}", "must have one row per candidate")


def _fail(field: str, message: str) -> NoReturn:
    raise msgspec.ValidationError(f"{message} - at `$.{field}`")


def as_builtins(record: DecisionRecord) -> dict[str, Any]:
    """The record as plain values, float arrays as (nested) lists of floats, exactly: to compare two records
    field by field (arrays do not compare with `==`), or to print one as JSON."""
    builtins: dict[str, Any] = msgspec.to_builtins(record, enc_hook=to_lists)
    return builtins
