"""Float vectors and matrices of a record contract as packed little-endian float32 bytes.

A record field typed `Vector` or `Matrix` holds a float32 numpy array in memory (what the serving graph
produced, what readers compute with). Stored as msgpack, a vector is one `bin` of its float32 values
(4 bytes a value, against 9 for a msgpack float64 and one Python float object each in a list), and a
matrix is the tensor form request bodies use, `{"shape": [rows, columns], "data": bin}`. Records written
before this form (lists of floats, and lists of lists) decode into the same arrays; every value of those
came from a float32 array, so the narrowing back to float32 is exact.

`enc_hook` / `dec_hook` are msgspec's hooks for these fields: pass them to every encoder, decoder and
`msgspec.convert` of such a record. `to_lists` is the hook for `msgspec.to_builtins` where lists of
floats are wanted (the lake's Parquet list columns, whose type stays list<double>).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
import numpy as np

DTYPE: Final = np.dtype("<f4")  # little-endian float32, on every host
# Where the Arrow schema (archive/schema.py) learns a field's rank: 1 for a vector, 2 for a matrix.
DIMS: Final = "float32_dims"

_Vector = np.ndarray[tuple[int], np.dtype[np.float32]]
_Matrix = np.ndarray[tuple[int, int], np.dtype[np.float32]]
Vector = Annotated[_Vector, msgspec.Meta(extra={DIMS: 1})]
Matrix = Annotated[_Matrix, msgspec.Meta(extra={DIMS: 2})]


class _Tensor(msgspec.Struct, forbid_unknown_fields=True):
    shape: tuple[int, int]
    data: bytes


def enc_hook(value: Any) -> Any:
    """A float32 array as its stored form (a 1-D array as bytes, a 2-D one as a tensor)."""
    if type(value) is not np.ndarray:
        raise NotImplementedError(f"cannot encode {type(value).__name__}")
    if value.ndim == 1:
        return value.tobytes()
    return {"shape": value.shape, "data": value.tobytes()}


def to_lists(value: Any) -> Any:
    """A float32 array as (nested) lists of Python floats: exact, float32 is a subset of float64."""
    if type(value) is not np.ndarray:
        raise NotImplementedError(f"cannot encode {type(value).__name__}")
    return value.tolist()


def dec_hook(kind: Any, value: Any) -> Any:
    """The array a stored vector or matrix holds: packed bytes, a tensor, or (older records) float lists.

    Raises ValueError or TypeError for anything else, which msgspec reports as a ValidationError at the
    field's path."""
    if kind == _Vector:
        return _vector(value)
    if kind == _Matrix:
        return _matrix(value)
    raise NotImplementedError(f"no decoder for {kind!r}")


def _vector(value: Any) -> _Vector:
    if isinstance(value, bytes):
        if len(value) % DTYPE.itemsize:
            raise ValueError(f"packed float32 bytes must be a multiple of {DTYPE.itemsize} long")
        return np.frombuffer(value, dtype=DTYPE)
    with np.errstate(over="ignore"):  # a float beyond float32's range becomes inf, which `validate` refuses
        return np.array(msgspec.convert(value, list[float]), dtype=DTYPE)


def _matrix(value: Any) -> _Matrix:
    if isinstance(value, dict):
        tensor = msgspec.convert(value, _Tensor)
        rows, columns = tensor.shape
        if rows < 0 or columns < 0 or len(tensor.data) != rows * columns * DTYPE.itemsize:
            raise ValueError(f"a {tensor.shape} float32 tensor needs {rows * columns * DTYPE.itemsize} bytes")
        return np.frombuffer(tensor.data, dtype=DTYPE).reshape(rows, columns)
    rows_of_floats = msgspec.convert(value, list[list[float]])
    if len({len(row) for row in rows_of_floats}) > 1:
        raise ValueError("every row of a matrix must have the same length")
    columns = len(rows_of_floats[0]) if rows_of_floats else 0
    with np.errstate(over="ignore"):  # as in _vector
        return np.array(rows_of_floats, dtype=DTYPE).reshape(len(rows_of_floats), columns)


def joined(arrays: list[np.ndarray]) -> bytes:
    """The arrays' float32 values, one after the other: one `bytes.join` over their buffers, a fraction of
    what `np.concatenate` + `tobytes` costs for a dozen small arrays (numpy's dispatch per call and per
    array dominates at these sizes). The join does not look at item sizes: callers pass float32 arrays,
    and a record's lengths that do not add up to its bytes are refused by its encoder."""
    try:
        return b"".join(arrays)  # type: ignore[arg-type]  # numpy arrays are buffers
    except TypeError:  # a part that is not C-contiguous (bytes.join takes only contiguous buffers)
        return np.concatenate([array.reshape(-1) for array in arrays], dtype=DTYPE, casting="no").tobytes()
