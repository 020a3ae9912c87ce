"""The decision log's Parquet lake (DESIGN.md, archive): where the archiver writes, what readers find.

Redis Streams are a bounded buffer; the lake is where the log lives. Two hive-partitioned datasets:

    <lake>/decisions/policy=<policy>/hour=<YYYY-MM-DDTHH>/part-*.parquet
    <lake>/feedback/hour=<YYYY-MM-DDTHH>/part-*.parquet

A file holds one column per field of its record contract (contracts/decision_record.py,
contracts/feedback_record.py; nested structs stay nested) except the partition keys, which live in
the path only, as hive layouts do (DuckDB, Spark, Trino and pyarrow read them back as columns),
plus the stream and entry id each row came from. The archiver acknowledges a stream entry only
after its file is renamed into place, so a crash between the two can archive an entry twice:
readers keep the first row per request id (decisions) or per request and event id (feedback).

The hour is the record's own time (UTC), not the time it was archived. Torch- and pyarrow-free: the
archiver (archive/) derives the Arrow schema from the record structs; readers rebuild structs from
rows with `from_row`.
"""

from __future__ import annotations

import math
import time as time_module
import urllib.parse
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import msgspec

from contracts.packed_floats import dec_hook

Dataset = Literal["decisions", "feedback"]
DATASETS: Final[tuple[Dataset, ...]] = ("decisions", "feedback")
# Partition keys of each dataset, outermost first: a policy's decisions are scanned without the others'.
# Feedback carries only a request id, so it is partitioned by hour alone.
PARTITION_KEYS: Final[dict[Dataset, tuple[str, ...]]] = {"decisions": ("policy", "hour"), "feedback": ("hour",)}
STREAM_COLUMN: Final = "_stream"  # the Redis stream (shard) a row was read from
ENTRY_COLUMN: Final = "_entry"  # its stream entry id, "<ms>-<seq>": with the stream, what makes a row unique
FILE_SUFFIX: Final = ".parquet"
ARCHIVE_GROUP: Final = "archiver"  # the consumer group of `cascade archive` on every stream it reads

# Dead letters: an entry that cannot be decoded is copied here with the reason, then acknowledged.
DEAD_LETTER_SUFFIX: Final = ":dead-letter"
DEAD_STREAM_FIELD: Final = b"stream"  # the stream the entry was read from
DEAD_ENTRY_FIELD: Final = b"entry"  # its entry id there
DEAD_REASON_FIELD: Final = b"reason"  # why it could not be archived
DEAD_FIELDS_FIELD: Final = b"fields"  # its fields as they were, msgpack-encoded {bytes: bytes}

T = TypeVar("T")


def dead_letter_stream(stream: str) -> str:
    """The dead-letter stream of a stream: the same name plus a suffix, so a hash tag in the name (Redis
    Cluster) puts both in one slot."""
    return stream + DEAD_LETTER_SUFFIX


def hour_of(epoch_seconds: float) -> str:
    """The hour partition of a record time: 'YYYY-MM-DDTHH', UTC (sorts as text, reads as a time)."""
    if not math.isfinite(epoch_seconds):
        raise ValueError(f"record time {epoch_seconds!r} is not finite")
    return time_module.strftime("%Y-%m-%dT%H", time_module.gmtime(epoch_seconds))


def partition_dir(lake: Path, dataset: Dataset, values: dict[str, str]) -> Path:
    """The folder of one partition: `<lake>/<dataset>/key=value/...`, values percent-encoded like hive."""
    folder = lake / dataset
    for key in PARTITION_KEYS[dataset]:
        folder = folder / f"{key}={urllib.parse.quote(values[key], safe='')}"
    return folder


def dataset_glob(lake: Path, dataset: Dataset) -> str:
    """A glob matching every file of a dataset (one folder level per partition key)."""
    depth = "/".join("*" for _ in PARTITION_KEYS[dataset])
    return str(lake / dataset / depth / f"*{FILE_SUFFIX}")


def dataset_files(lake: Path, dataset: Dataset) -> list[Path]:
    """The dataset's files now (temporary files being written are not among them)."""
    return sorted((lake / dataset).glob("/".join("*" for _ in PARTITION_KEYS[dataset]) + f"/*{FILE_SUFFIX}"))


def from_row(row: dict[str, Any], record_type: type[T]) -> T:
    """A record struct rebuilt from one lake row (a dict from pyarrow or DuckDB): maps, which Arrow gives
    back as key/value pairs, become dicts again; float list columns of a packed float32 field become its
    float32 array again (contracts/packed_floats.py); partition and bookkeeping columns are ignored."""
    return msgspec.convert(_mappings(row, msgspec.inspect.type_info(record_type)), record_type, dec_hook=dec_hook)


def _mappings(value: Any, info: msgspec.inspect.Type) -> Any:
    """`value` with every Arrow map (a list of (key, value) pairs) that `info` says is a dict made a dict."""
    if value is None:
        return None
    if isinstance(info, msgspec.inspect.Metadata):
        return _mappings(value, info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        inner = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return _mappings(value, inner[0]) if len(inner) == 1 else value
    if isinstance(info, msgspec.inspect.StructType):
        fields = {f.name: f.type for f in info.fields}
        return {k: _mappings(v, fields[k]) if k in fields else v for k, v in value.items()}
    if isinstance(info, msgspec.inspect.DictType):
        pairs = value.items() if isinstance(value, dict) else value
        return {k: _mappings(v, info.value_type) for k, v in pairs}
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        return [_mappings(v, info.item_type) for v in value]
    return value
