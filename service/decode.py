"""Request bodies → validated numpy tensors, with every rejection naming its field.

Bytes are decoded once by msgspec into the schema's Structs (no per-candidate Python
objects beyond lists of floats), then turned into contiguous float32 arrays and checked
against the serving bundle's feature schema.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
import numpy as np

from export.manifest import Manifest
from service.cascade import F32, CascadeInputs
from service.problems import ProblemError, invalid_field, malformed_body
from service.schema import RankRequest

T = TypeVar("T")

_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:required|unknown) field `(?P<name>[^`]+)`")


def decode_json(body: bytes, kind: type[T]) -> T:
    """Decode and type-check a JSON body; 400 if it is not JSON, 422 naming the field otherwise."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise _validation_problem(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise malformed_body(f"body is not valid JSON: {exc}") from exc


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


def rank_inputs(request: RankRequest, manifest: Manifest) -> CascadeInputs:
    """Check a decoded rank request against the bundle's feature schema; build the graph's inputs."""
    schema = manifest.feature_schema
    candidates = request.candidates
    n = len(candidates.ids)
    if n == 0:
        raise invalid_field("candidates.ids", "at least one candidate is required")
    for field, rows in (
        ("candidates.features", candidates.features),
        ("candidates.predictions", candidates.predictions),
    ):
        if len(rows) != n:
            raise invalid_field(field, f"has {len(rows)} rows for {n} candidate ids")
    duplicate = _first_duplicate(candidates.ids) if len(set(candidates.ids)) != n else None
    if duplicate is not None:
        raise invalid_field(f"candidates.ids[{duplicate}]", f"duplicate candidate id '{candidates.ids[duplicate]}'")
    if not 1 <= request.k <= n:
        raise invalid_field("k", f"k must be between 1 and the number of candidates ({n}), got {request.k}")
    context = request.context if request.context is not None else [0.0] * schema.context_dim
    return CascadeInputs(
        user=_vector(request.user.features, schema.user_dim, "user.features"),
        context=_vector(context, schema.context_dim, "context"),
        item_features=_matrix(candidates.features, schema.item_dim, "candidates.features"),
        mtl_predictions=_matrix(candidates.predictions, len(schema.objectives), "candidates.predictions"),
        k=request.k,
    )
