"""The decision record contract, property-tested: the encoder and every reader agree on what a record is."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import decision_record
from contracts.decision_record import (
    CandidateLog,
    DecisionRecord,
    FusionLog,
    ItemFusionLog,
    ResActLog,
    StageLog,
    Timings,
    candidate_ids,
    pack_rows,
    unpack_rows,
)
from contracts.packed_floats import dec_hook, enc_hook, to_lists

finite = st.floats(allow_nan=False, allow_infinity=False)
finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False)  # what the float32 graphs produce


def floats32(size: int | None = None) -> st.SearchStrategy[np.ndarray]:
    lengths = st.just(size) if size is not None else st.integers(0, 6)
    return lengths.flatmap(lambda n: st.lists(finite32, min_size=n, max_size=n)).map(
        lambda xs: np.array(xs, dtype=np.float32)
    )


def matrices32(rows: int, columns: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(finite32, min_size=rows * columns, max_size=rows * columns).map(
        lambda xs: np.array(xs, dtype=np.float32).reshape(rows, columns)
    )


vector = floats32()
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
text = st.text(max_size=12)
digest = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@st.composite
def candidate_logs(draw: st.DrawFn) -> CandidateLog:
    n = draw(st.integers(0, 8))
    from_table = draw(st.booleans())
    rows = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
    matrix = matrices32(n, 3)
    logged = draw(st.booleans())
    return CandidateLog(
        digest=draw(digest),
        ids=[] if from_table else draw(st.lists(text, min_size=n, max_size=n)),
        rows=pack_rows(rows) if from_table else None,
        item_table=draw(text) if from_table else draw(st.none() | text),
        features=draw(matrix) if logged else None,
        predictions=draw(matrix) if logged else None,
    )


@st.composite
def records(draw: st.DrawFn) -> DecisionRecord:
    candidates = draw(candidate_logs())
    names = draw(st.lists(text, max_size=4))
    a = len(names)
    action = floats32(a)
    served = draw(st.integers(0, 5))
    n_draws = draw(st.integers(1, 3))
    resact = ResActLog(
        latents=draw(matrices32(n_draws, draw(st.integers(0, 4)))),
        candidates=draw(matrices32(n_draws, a)),
        q=draw(floats32(n_draws)),
        choice=draw(st.integers(0, n_draws - 1)),
        action=draw(action),
    )
    per_item = matrices32(candidates.count, a)
    return DecisionRecord(
        schema_version=decision_record.SCHEMA_VERSION,
        request_id=draw(text),
        time=draw(finite),
        user_id=draw(text),
        policy=draw(text),
        version=draw(text),
        arm=draw(st.sampled_from(["control", "canary", "shadow"])),
        k=draw(st.integers(0, 1000)),
        user_features=draw(vector),
        context=draw(vector),
        candidates=candidates,
        stages=draw(st.lists(st.builds(StageLog, text, st.integers(0, 99), st.integers(0, 99), vector, vector))),
        fusion=FusionLog(*(draw(vector) for _ in range(5)), action=draw(action), names=names),
        served_ids=draw(st.lists(text, min_size=served, max_size=served)),
        served_scores=draw(floats32(served)),
        log_prob=draw(finite),
        novelty=draw(finite),
        explored=draw(st.booleans()),
        timings=Timings(*draw(st.tuples(finite, finite, finite))),
        shadow_of=draw(st.none() | text),
        kind=draw(st.sampled_from(["rank", "fusion"])),
        resact=resact if draw(st.booleans()) else None,
        item_fusion=ItemFusionLog(draw(per_item), draw(per_item), draw(per_item)) if draw(st.booleans()) else None,
    )


def _builtins(record: DecisionRecord) -> Any:
    """A record's fields as plain values (float arrays as lists), to compare records field by field."""
    return msgspec.to_builtins(record, enc_hook=to_lists)


def _schema_2(record: DecisionRecord) -> bytes:
    """A record as schema 2 stored it: msgpack, float arrays as lists of float64."""
    data = msgspec.to_builtins(record, builtin_types=(bytes,), enc_hook=to_lists)
    return msgspec.msgpack.encode({**data, "schema_version": 2})


def _float_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position of a float in a record's builtins form."""
    if isinstance(value, float):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _float_paths(item, (*path, key))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _float_paths(item, (*path, i))]
    return []


def _set(value: Any, path: tuple[Any, ...], new: Any) -> None:
    for key in path[:-1]:
        value = value[key]
    value[path[-1]] = new


@settings(max_examples=300, deadline=None)
@given(records())
def test_any_record_the_encoder_writes_decodes_to_itself(record: DecisionRecord) -> None:
    stored = decision_record.encode(record)
    read = decision_record.decode(stored)
    assert _builtins(read) == _builtins(record)
    assert decision_record.encode(read) == stored
    assert all(a.dtype == np.float32 for a in (read.fusion.state, read.served_scores, read.user_features))


@settings(max_examples=200, deadline=None)
@given(records())
def test_a_schema_2_record_reads_into_the_arrays_schema_3_holds(record: DecisionRecord) -> None:
    """Float lists of float32 values (all a schema-2 writer stored) narrow back to float32 exactly."""
    read = decision_record.decode(_schema_2(record))
    assert read.schema_version == 2
    assert _builtins(msgspec.structs.replace(read, schema_version=record.schema_version)) == _builtins(record)
    assert read.fusion.mean.dtype == np.float32 and read.fusion.mean.ndim == 1


@settings(max_examples=100, deadline=None)
@given(records())
def test_a_record_is_smaller_packed_than_as_float_lists(record: DecisionRecord) -> None:
    assert len(decision_record.encode(record)) <= len(_schema_2(record)) + 4 * _arrays_of(record)


def _arrays_of(record: DecisionRecord) -> int:
    vectors, matrices = decision_record._arrays(record)
    return len(vectors) + len(matrices) * 5  # a bin header per vector, a tensor map per matrix


@settings(max_examples=300, deadline=None)
@given(records(), st.data())
def test_a_non_finite_float_anywhere_is_refused_by_the_encoder_and_every_reader(
    record: DecisionRecord, data: st.DataObject
) -> None:
    builtins = _builtins(record)
    paths = _float_paths(builtins)
    if not paths:
        return
    path = data.draw(st.sampled_from(paths))
    _set(builtins, path, data.draw(non_finite))
    poisoned = msgspec.convert(builtins, DecisionRecord, dec_hook=dec_hook)  # the types pass: NaN is a float32

    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"at `${field}`")):  # the value itself is named
        decision_record.encode(poisoned)
    with pytest.raises(msgspec.ValidationError):  # written by something else than the encoder
        decision_record.decode(msgspec.msgpack.encode(poisoned, enc_hook=enc_hook))
    with pytest.raises(msgspec.ValidationError):  # or by a schema-2 writer, floats as lists
        decision_record.decode(_schema_2(poisoned))
    # JSON has no NaN: a JSON writer stores it as null, which the reader refuses as well.
    with pytest.raises(msgspec.ValidationError):
        decision_record.decode(msgspec.json.encode(poisoned, enc_hook=to_lists))


garbage = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | text | st.binary(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(records(), st.data())
def test_whatever_a_reader_accepts_the_encoder_could_have_written(record: DecisionRecord, data: st.DataObject) -> None:
    """Replace any one field, at any depth, by anything: a reader either rejects the bytes, or reads a record
    the encoder writes back byte for byte."""
    # The stored form of each msgpack schema: one float buffer (4), packed bytes and tensors per array (3),
    # or float lists (2).
    writer = data.draw(st.sampled_from([decision_record.encode, _schema_3, _schema_2]))
    builtins = msgspec.msgpack.decode(writer(record))
    paths: list[tuple[Any, ...]] = []

    def walk(value: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for key, item in items:
            walk(item, (*path, key))

    walk(builtins, ())
    path = data.draw(st.sampled_from(paths[1:]))
    _set(builtins, path, data.draw(garbage))
    stored = msgspec.msgpack.encode(builtins)
    try:
        read = decision_record.decode(stored)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return
    assert _builtins(decision_record.decode(decision_record.encode(read))) == _builtins(read)


@given(st.lists(st.integers(0, 50), max_size=20))
def test_rows_resolve_to_ids_through_the_item_table(rows: list[int]) -> None:
    table_ids = [f"item-{i}" for i in range(51)]
    log = CandidateLog(digest="0" * 64, rows=pack_rows(rows), item_table="v1")
    assert unpack_rows(log.rows or b"").tolist() == rows
    assert log.count == len(rows)
    assert candidate_ids(log, table_ids) == [table_ids[r] for r in rows]


def test_rows_need_their_table_and_whole_indices() -> None:
    base = CandidateLog(digest="0" * 64, rows=pack_rows(np.arange(3)), item_table="v1")
    record_fields = _minimal(base)
    for broken in (
        msgspec.structs.replace(base, item_table=None),
        msgspec.structs.replace(base, rows=b"\x00" * 5),
        msgspec.structs.replace(base, ids=["a", "b", "c"]),
    ):
        with pytest.raises(msgspec.ValidationError, match="candidates"):
            decision_record.encode(msgspec.structs.replace(record_fields, candidates=broken))


def test_a_schema_version_1_json_record_still_decodes() -> None:
    record = msgspec.structs.replace(_minimal(CandidateLog(digest="0" * 64, ids=["a", "b"])), schema_version=1)
    read = decision_record.decode(msgspec.json.encode(record, enc_hook=to_lists))
    assert _builtins(read) == _builtins(record)
    assert read.fusion.state.dtype == np.float32


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (lambda r: _fusion(r, mean=np.array([np.nan], np.float32)), "fusion.mean[0]", "must be finite"),
        (lambda r: _fusion(r, std=np.array([1.0], np.float64)), "fusion.std", "float32 numpy array"),
        (lambda r: _fusion(r, noise=[0.0]), "fusion.noise", "float32 numpy array"),
        (lambda r: _fusion(r, state=np.zeros((1, 1), np.float32)), "fusion.state", "1-D"),
        (lambda r: msgspec.structs.replace(r, served_scores=np.array([1.0], np.float16)), "served_scores", "float32"),
        (
            lambda r: msgspec.structs.replace(
                r, item_fusion=ItemFusionLog(*(np.array([[0.0, np.inf]], np.float32),) * 3)
            ),
            "item_fusion.noise[0][1]",
            "must be finite",
        ),
    ],
)
def test_the_encoder_names_the_first_bad_array_and_value(change: Any, field: str, message: str) -> None:
    record = change(_minimal(CandidateLog(digest="0" * 64, ids=["a"])))
    with pytest.raises(msgspec.ValidationError, match=re.escape(f"at `$.{field}`")) as refused:
        decision_record.encode(record)
    assert message in str(refused.value)


def _schema_3(record: DecisionRecord) -> bytes:
    """A record as schema 3 stored it: a msgpack map, each float vector and matrix its own packed bytes."""
    return msgspec.msgpack.encode(msgspec.structs.replace(record, schema_version=3), enc_hook=enc_hook)


@settings(max_examples=200, deadline=None)
@given(records())
def test_a_schema_3_record_reads_into_the_same_record(record: DecisionRecord) -> None:
    read = decision_record.decode(_schema_3(record))
    assert read.schema_version == 3
    assert _builtins(msgspec.structs.replace(read, schema_version=record.schema_version)) == _builtins(record)


@settings(max_examples=300, deadline=None)
@given(records(), st.data())
def test_the_packed_encoder_refuses_exactly_what_the_record_rule_does(
    record: DecisionRecord, data: st.DataObject
) -> None:
    """The serving path encodes a PackedRecord without building the record: its check must be `validate`'s
    rule, field names included, on valid records and on records with a non-finite float anywhere."""
    builtins = _builtins(record)
    paths = _float_paths(builtins)
    if paths and data.draw(st.booleans()):
        path = data.draw(st.sampled_from(paths))
        _set(builtins, path, data.draw(non_finite))
        record = msgspec.convert(builtins, DecisionRecord, dec_hook=dec_hook)
    try:
        decision_record.validate(record)
    except msgspec.ValidationError as refused:
        with pytest.raises(msgspec.ValidationError) as packed_refused:
            decision_record.encode_packed(decision_record.pack(record))
        assert str(packed_refused.value) == str(refused)
        return
    stored = decision_record.encode_packed(decision_record.pack(record))
    assert stored == decision_record.encode(record)
    assert _builtins(decision_record.decode(stored)) == _builtins(record)


def test_packed_floats_of_a_wrong_length_are_refused_at_their_field() -> None:
    """Schema 3: each vector its own bytes; schema 4: the lengths must describe the one buffer."""
    record = _minimal(CandidateLog(digest="0" * 64, ids=["a"]))
    stored = msgspec.msgpack.decode(_schema_3(record))
    stored["fusion"]["mean"] = b"\x00" * 6
    with pytest.raises(msgspec.ValidationError, match=re.escape("$.fusion.mean")):
        decision_record.decode(msgspec.msgpack.encode(stored))
    stored["fusion"]["mean"] = b"\x00" * 4
    empty = {"shape": [0, 0], "data": b""}
    stored["resact"] = {"latents": {"shape": [2, 2], "data": b"\x00" * 12}, "candidates": empty, "q": b"", "choice": 0,
                        "action": b""}  # fmt: skip
    with pytest.raises(msgspec.ValidationError, match=re.escape("$.resact.latents")):
        decision_record.decode(msgspec.msgpack.encode(stored))

    packed = decision_record.pack(record)
    for broken, field in (
        (msgspec.structs.replace(packed, floats=packed.floats[:-2]), "floats"),
        (msgspec.structs.replace(packed, floats=packed.floats[:-4]), "lengths"),
        (msgspec.structs.replace(packed, lengths=[*packed.lengths, 0]), "lengths"),
        (msgspec.structs.replace(packed, lengths=[-1, *packed.lengths[1:]]), "lengths"),
    ):
        stored_packed = msgspec.msgpack.encode(broken)
        with pytest.raises(msgspec.ValidationError, match=re.escape(f"$.{field}")):
            decision_record.decode(stored_packed)
        with pytest.raises(msgspec.ValidationError, match=re.escape(f"$.{field}")):
            decision_record.encode_packed(broken)


def _fusion(record: DecisionRecord, **fields: Any) -> DecisionRecord:
    return msgspec.structs.replace(record, fusion=msgspec.structs.replace(record.fusion, **fields))


def _minimal(candidates: CandidateLog) -> DecisionRecord:
    return DecisionRecord(
        schema_version=decision_record.SCHEMA_VERSION,
        request_id="r",
        time=1.0,
        user_id="u",
        policy="p",
        version="v",
        arm="control",
        k=1,
        user_features=np.array([0.5], np.float32),
        context=np.zeros(0, np.float32),
        candidates=candidates,
        stages=[],
        fusion=FusionLog(*(np.array([v], np.float32) for v in (0.5, 0.0, 1.0, 0.0, 0.0, 0.0)), names=["w"]),
        served_ids=["a"],
        served_scores=np.array([1.0], np.float32),
        log_prob=-1.0,
        novelty=0.1,
        explored=False,
        timings=Timings(1.0, 1.0, 2.0),
    )
