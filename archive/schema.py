"""The Arrow schema of a record contract, derived from its msgspec struct (never a second field list).

Every struct field becomes a column of the same name; nested structs stay nested (struct columns),
lists become list columns, dicts map columns, literals strings, optionals nullable. A packed float32
vector or matrix (contracts/packed_floats.py) is a list<double> (or list<list<double>>) column: the
column type float lists had before they were packed, so files of every schema version read as one
dataset, and float32 values widen to float64 exactly. A field added to
the contract is a column added to the files written after it; readers scan old and new files
together by column name (DuckDB's `union_by_name`).
"""

from __future__ import annotations

from typing import Any

import msgspec
import pyarrow as pa

from contracts.lake import ENTRY_COLUMN, STREAM_COLUMN
from contracts.packed_floats import DIMS, to_lists


class UnsupportedFieldError(TypeError):
    """A contract field whose type has no Arrow column type here."""


def arrow_type(info: msgspec.inspect.Type) -> pa.DataType:
    """The Arrow type of one msgspec type."""
    inspect = msgspec.inspect
    simple: dict[type[inspect.Type], pa.DataType] = {
        inspect.FloatType: pa.float64(),
        inspect.IntType: pa.int64(),
        inspect.BoolType: pa.bool_(),
        inspect.StrType: pa.string(),
        inspect.BytesType: pa.binary(),
        inspect.ByteArrayType: pa.binary(),
    }
    if type(info) in simple:
        return simple[type(info)]
    if isinstance(info, inspect.Metadata):
        dims = (info.extra or {}).get(DIMS)
        if dims is not None:  # a packed float32 array, as nested float lists
            column: pa.DataType = pa.float64()
            for _ in range(dims):
                column = pa.list_(column)
            return column
        return arrow_type(info.type)
    if isinstance(info, inspect.LiteralType):
        return pa.string() if all(isinstance(v, str) for v in info.values) else pa.int64()
    if isinstance(info, inspect.UnionType):
        inner = [t for t in info.types if not isinstance(t, inspect.NoneType)]
        if len(inner) == 1:
            return arrow_type(inner[0])
    if isinstance(info, inspect.ListType | inspect.VarTupleType):
        return pa.list_(arrow_type(info.item_type))
    if isinstance(info, inspect.DictType):
        return pa.map_(arrow_type(info.key_type), arrow_type(info.value_type))
    if isinstance(info, inspect.StructType):
        return pa.struct([pa.field(f.name, arrow_type(f.type)) for f in info.fields])
    raise UnsupportedFieldError(f"no Arrow column type for {info!r}")


def record_schema(record_type: type[msgspec.Struct], partition_keys: tuple[str, ...]) -> pa.Schema:
    """Columns of a lake file of `record_type`: its fields but the partition keys (they live in the
    path), then the stream and entry id each row came from."""
    info = msgspec.inspect.type_info(record_type)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = [pa.field(f.name, arrow_type(f.type)) for f in info.fields if f.name not in partition_keys]
    return pa.schema([*fields, pa.field(STREAM_COLUMN, pa.string()), pa.field(ENTRY_COLUMN, pa.string())])


def record_row(record: msgspec.Struct, stream: str, entry_id: str, partition_keys: tuple[str, ...]) -> dict[str, Any]:
    """One record as a row of `record_schema` (bytes stay bytes, float32 arrays become float lists; partition
    keys left to the path)."""
    row: dict[str, Any] = msgspec.to_builtins(record, builtin_types=(bytes, bytearray), enc_hook=to_lists)
    for key in partition_keys:
        row.pop(key, None)
    row[STREAM_COLUMN] = stream
    row[ENTRY_COLUMN] = entry_id
    return row
