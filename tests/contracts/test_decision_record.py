"""The decision record contract, property-tested: the encoder and every reader agree on what a record is."""

from __future__ import annotations

import math
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

finite = st.floats(allow_nan=False, allow_infinity=False)
vector = st.lists(finite, max_size=6)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
text = st.text(max_size=12)
digest = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@st.composite
def candidate_logs(draw: st.DrawFn) -> CandidateLog:
    n = draw(st.integers(0, 8))
    from_table = draw(st.booleans())
    rows = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
    matrix = st.lists(st.lists(finite, min_size=3, max_size=3), min_size=n, max_size=n)
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
    action = st.lists(finite, min_size=a, max_size=a)
    served = draw(st.integers(0, 5))
    n_draws = draw(st.integers(1, 3))
    resact = ResActLog(
        latents=draw(st.lists(vector, min_size=n_draws, max_size=n_draws)),
        candidates=draw(st.lists(action, min_size=n_draws, max_size=n_draws)),
        q=draw(st.lists(finite, min_size=n_draws, max_size=n_draws)),
        choice=draw(st.integers(0, n_draws - 1)),
        action=draw(action),
    )
    per_item = st.lists(action, min_size=candidates.count, max_size=candidates.count)
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
        served_scores=draw(st.lists(finite, min_size=served, max_size=served)),
        log_prob=draw(finite),
        novelty=draw(finite),
        explored=draw(st.booleans()),
        timings=Timings(*draw(st.tuples(finite, finite, finite))),
        shadow_of=draw(st.none() | text),
        kind=draw(st.sampled_from(["rank", "fusion"])),
        resact=resact if draw(st.booleans()) else None,
        item_fusion=ItemFusionLog(draw(per_item), draw(per_item), draw(per_item)) if draw(st.booleans()) else None,
    )


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
    assert decision_record.decode(decision_record.encode(record)) == record


@settings(max_examples=300, deadline=None)
@given(records(), st.data())
def test_a_non_finite_float_anywhere_is_refused_by_the_encoder_and_every_reader(
    record: DecisionRecord, data: st.DataObject
) -> None:
    builtins = msgspec.to_builtins(record)
    paths = _float_paths(builtins)
    if not paths:
        return
    path = data.draw(st.sampled_from(paths))
    _set(builtins, path, data.draw(non_finite))
    poisoned = msgspec.convert(builtins, DecisionRecord)  # the type checks pass: a NaN is a float

    with pytest.raises(msgspec.ValidationError):
        decision_record.encode(poisoned)
    with pytest.raises(msgspec.ValidationError):
        decision_record.decode(msgspec.msgpack.encode(poisoned))  # written by something else than the encoder
    # JSON has no NaN: a JSON writer stores it as null, which the reader refuses as well.
    with pytest.raises(msgspec.ValidationError):
        decision_record.decode(msgspec.json.encode(poisoned))


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
    builtins = msgspec.to_builtins(record)
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
    assert decision_record.decode(decision_record.encode(read)) == read


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
    assert decision_record.decode(msgspec.json.encode(record)) == record


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
        user_features=[0.5],
        context=[],
        candidates=candidates,
        stages=[],
        fusion=FusionLog([0.5], [0.0], [1.0], [0.0], [0.0], [0.0], ["w"]),
        served_ids=["a"],
        served_scores=[1.0],
        log_prob=-1.0,
        novelty=0.1,
        explored=False,
        timings=Timings(1.0, 1.0, 2.0),
    )
