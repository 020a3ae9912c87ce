"""Archiver configuration: read once from the environment (`CASCADE_ARCHIVE_*`), then passed down.

The stream names and the Redis URL are the service's own variables (`CASCADE_DECISION_STREAM`,
`CASCADE_FEEDBACK_STREAM`, `REDIS_URL`), so an archiver beside a service reads what it writes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.lake import ARCHIVE_GROUP
from contracts.streams import DEFAULT_DECISION_STREAM, DEFAULT_FEEDBACK_STREAM


class ArchiveSettings(BaseSettings):
    """Everything `cascade archive` can be told."""

    model_config = SettingsConfigDict(env_prefix="CASCADE_ARCHIVE_", extra="ignore", populate_by_name=True)

    lake: Path = Path("lake")
    """Root folder of the Parquet lake (contracts/lake.py)."""

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "CASCADE_REDIS_URL"))
    """Redis holding the streams (a `redis+cluster://` URL, or `CASCADE_REDIS_CLUSTER=true`, for a cluster)."""

    redis_cluster: bool = Field(default=False, validation_alias=AliasChoices("CASCADE_REDIS_CLUSTER"))
    """Connect with the Redis Cluster client (the same setting the service reads)."""

    decision_stream: str = Field(
        default=DEFAULT_DECISION_STREAM, validation_alias=AliasChoices("CASCADE_DECISION_STREAM")
    )
    """The service's decision stream (its shards are found from it)."""

    feedback_stream: str = Field(
        default=DEFAULT_FEEDBACK_STREAM, validation_alias=AliasChoices("CASCADE_FEEDBACK_STREAM")
    )
    """The service's feedback stream (its shards are found from it)."""

    group: str = ARCHIVE_GROUP
    """Consumer group of the archivers; several archivers with one group share the work."""

    consumer: str = Field(default="archiver-0", pattern=r"^[A-Za-z0-9_.-]+$")
    """This archiver's name in the group. Keep it across restarts: a restart then re-reads its own
    unacknowledged entries at once instead of waiting `claim_idle_ms` for them."""

    read_batch: int = Field(default=1024, gt=0)
    """Entries read per stream per pass."""

    flush_bytes: int = Field(default=64 << 20, gt=0)
    """Records held in memory (bytes as stored in Redis) before they are written as Parquet."""

    flush_seconds: float = Field(default=30.0, gt=0)
    """Longest a record waits in memory before it is written (and then acknowledged and trimmed)."""

    row_group_rows: int = Field(default=128 * 1024, gt=0)
    """Rows per Parquet row group at most."""

    claim_idle_ms: int = Field(default=300_000, gt=0)
    """Entries pending this long at another consumer of the group are taken over."""

    poll_seconds: float = Field(default=0.2, gt=0)
    """Pause after a pass that found nothing new."""

    trim: bool = True
    """Trim every stream behind its slowest consumer group after each flush (XTRIM MINID)."""

    retire_idle_seconds: float = Field(default=3600.0, ge=0)
    """Delete decision shards every group has read, with nothing pending, and no entry newer than this (those
    of stopped workers); 0 keeps them. Keep it above the time a dead worker's spool takes to be replayed."""

    retire_every_seconds: float = Field(default=60.0, gt=0)
    """How often the archiver looks for such shards."""

    @model_validator(mode="after")
    def _claim_after_flush(self) -> ArchiveSettings:
        if self.claim_idle_ms < 2 * 1000 * self.flush_seconds:
            raise ValueError("claim_idle_ms must be at least twice flush_seconds (a buffered entry is not abandoned)")
        return self
