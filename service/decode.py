"""Request bodies → validated numpy tensors, with every rejection naming its field.

Bytes are decoded once by msgspec into the schema's Structs (no per-candidate Python
objects beyond lists of floats), then turned into contiguous float32 arrays and checked
against the serving bundle's feature schema.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar, cast

import msgspec
import numpy as np
import numpy.typing as npt

from contracts.item_table import ItemTable
from contracts.manifest import FeatureSchema, Manifest
from service.body import Body
from service.cascade import F32, CascadeInputs, UserState
from service.item_catalog import rows_of, table_matrices
from service.problems import ProblemError, invalid_field, malformed_body, not_ready
from service.schema import Candidates, Matrix, RankRequest, Tensor, User

T = TypeVar("T")
Rows = npt.NDArray[np.intp]
# Candidate features, predictions, and their item-table rows when the table supplied any matrix.
CandidateMatrices = tuple[F32, F32, Rows | None]

_AT_PATH = re.compile(r" - at (?:`key` in )?`\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:required|unknown) field `(?P<name>[^`]+)`")


_json_decoders: dict[type, msgspec.json.Decoder[Any]] = {}
_msgpack_decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}


def decode_json(body: bytes, kind: type[T]) -> T:
    """Decode and type-check a JSON body; 400 if it is not JSON, 422 naming the field otherwise."""
    return decode_body(Body(body, "json"), kind)


def decode_body(body: Body, kind: type[T]) -> T:
    """Decode and type-check a JSON or msgpack body against the same schema type."""
    try:
        if body.codec == "msgpack":
            msgpack_decoder = _msgpack_decoders.get(kind) or _msgpack_decoders.setdefault(
                kind, msgspec.msgpack.Decoder(kind)
            )
            return cast(T, msgpack_decoder.decode(body.data))
        json_decoder = _json_decoders.get(kind) or _json_decoders.setdefault(kind, msgspec.json.Decoder(kind))
        return cast(T, json_decoder.decode(body.data))
    except msgspec.ValidationError as exc:
        raise _validation_problem(str(exc)) from exc
    except msgspec.DecodeError as exc:
        name = "msgpack" if body.codec == "msgpack" else "JSON"
        raise malformed_body(f"body is not valid {name}: {exc}") from exc


def _validation_problem(message: str) -> ProblemError:
    """msgspec says e.g. "Expected `float`, got `str` - at `$.candidates.features[0][1]`"."""
    path = ""
    match = _AT_PATH.search(message)
    if match:
        # msgspec writes a dict value's position as "[...]"; the dict's own name is the field.
        path = match.group("path").lstrip(".").replace("[...]", "")
        message = message[: match.start()]
    named = _NAMED_FIELD.search(message)
    if named:  # missing or unknown fields name themselves
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    return invalid_field(path or "body", message)


def _matrix(rows: list[list[float]], width: int, field: str) -> F32:
    """A [len(rows), width] float32 array, refusing ragged rows, wrong widths and non-finite values."""
    try:
        with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
            array = np.asarray(rows, dtype=np.float32)
    except ValueError:  # ragged rows: numpy cannot make a matrix of them
        array = np.empty((0, 0), dtype=np.float32)
    if array.shape != (len(rows), width):
        bad = next((i for i, row in enumerate(rows) if len(row) != width), 0)
        raise invalid_field(f"{field}[{bad}]", f"each row must have {width} values, got {len(rows[bad])}")
    _require_finite(array, field)
    return array


def _vector(values: list[float], width: int, field: str) -> F32:
    if len(values) != width:
        raise invalid_field(field, f"must have {width} values, got {len(values)}")
    with np.errstate(over="ignore"):
        array = np.asarray(values, dtype=np.float32).reshape(1, width)
    _require_finite(array, field, is_vector=True)
    return array


def _require_finite(array: F32, field: str, *, is_vector: bool = False) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        row, column = (int(i) for i in np.argwhere(~finite)[0])
        where = f"[{column}]" if is_vector else f"[{row}][{column}]"
        raise invalid_field(field + where, "values must be finite numbers (no NaN or Infinity)")


def _first_duplicate(ids: list[str]) -> int | None:
    seen: set[str] = set()
    for index, item in enumerate(ids):
        if item in seen:
            return index
        seen.add(item)
    return None


def rank_inputs(request: RankRequest, manifest: Manifest, table: ItemTable | None = None) -> CascadeInputs:
    """Check a decoded rank request against the bundle's feature schema; build the graph's inputs.

    Candidate rows come from the body when sent (JSON rows or a raw float32 Tensor) and from the
    item table, by id, when not.
    """
    schema = manifest.feature_schema
    n = len(request.candidates.ids)
    if n and not 1 <= request.k <= n:
        raise invalid_field("k", f"k must be between 1 and the number of candidates ({n}), got {request.k}")
    features, predictions, rows = candidate_rows(request.candidates, manifest, table)
    user, context = _user_state(request.user, request.context, schema)
    return CascadeInputs(
        user=user, context=context, item_features=features, mtl_predictions=predictions, k=request.k, table_rows=rows
    )


def user_inputs(user: User, context: list[float] | None, manifest: Manifest) -> UserState:
    """The request-level state for the fusion graph alone (no candidates), checked against the schema."""
    user_vector, context_vector = _user_state(user, context, manifest.feature_schema)
    return UserState(user=user_vector, context=context_vector)


def _user_state(user: User, context: list[float] | None, schema: FeatureSchema) -> tuple[F32, F32]:
    given = context if context is not None else [0.0] * schema.context_dim
    return _vector(user.features, schema.user_dim, "user.features"), _vector(given, schema.context_dim, "context")


def candidate_rows(candidates: Candidates, manifest: Manifest, table: ItemTable | None) -> CandidateMatrices:
    """Check the candidate ids (some, unique), then their matrices (candidate_matrices)."""
    n = len(candidates.ids)
    if n == 0:
        raise invalid_field("candidates.ids", "at least one candidate is required")
    if len(set(candidates.ids)) != n:
        duplicate = _first_duplicate(candidates.ids) or 0
        raise invalid_field(f"candidates.ids[{duplicate}]", f"duplicate candidate id '{candidates.ids[duplicate]}'")
    return candidate_matrices(candidates, manifest, table)


def candidate_matrices(candidates: Candidates, manifest: Manifest, table: ItemTable | None) -> CandidateMatrices:
    """[N, item_dim] features and [N, objectives] predictions: from the body where sent, else from the table
    (then also each candidate's table row)."""
    schema = manifest.feature_schema
    n = len(candidates.ids)
    table_features: F32 | None = None
    table_predictions: F32 | None = None
    rows: Rows | None = None
    if candidates.features is None or candidates.predictions is None:
        table_features, table_predictions, rows = _table_rows(candidates.ids, schema, table)
    features = (
        _given(candidates.features, n, schema.item_dim, "candidates.features")
        if candidates.features is not None
        else table_features
    )
    predictions = (
        _given(candidates.predictions, n, len(schema.objectives), "candidates.predictions")
        if candidates.predictions is not None
        else table_predictions
    )
    assert features is not None and predictions is not None
    return features, predictions, rows


def _table_rows(ids: list[str], schema: FeatureSchema, table: ItemTable | None) -> tuple[F32, F32, Rows]:
    rows = rows_of(table, ids)
    assert table is not None  # rows_of refuses a missing table
    if table.manifest.item_columns != schema.item_columns or table.manifest.objectives != schema.objectives:
        raise not_ready(f"item table {table.version} does not match the serving bundle's feature schema")
    return (*table_matrices(table, rows), rows)


def _given(matrix: Matrix, n: int, width: int, field: str) -> F32:
    if isinstance(matrix, Tensor):
        return _tensor(matrix, n, width, field)
    if len(matrix) != n:
        raise invalid_field(field, f"has {len(matrix)} rows for {n} candidate ids")
    return _matrix(matrix, width, field)


def _tensor(tensor: Tensor, n: int, width: int, field: str) -> F32:
    """A zero-copy float32 view of a binary tensor, after checking its shape, size and values."""
    if tensor.shape != [n, width]:
        raise invalid_field(f"{field}.shape", f"must be [{n}, {width}] (candidates × columns), got {tensor.shape}")
    size = n * width * 4
    if len(tensor.data) != size:
        raise invalid_field(f"{field}.data", f"must hold {size} bytes ({n}×{width} float32), got {len(tensor.data)}")
    array: F32 = np.frombuffer(tensor.data, dtype="<f4").reshape(n, width)
    _require_finite(array, field)
    return array
