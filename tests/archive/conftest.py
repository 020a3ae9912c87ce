"""An archiver over the test's own streams (settings fixture), writing a lake in the test's folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from archive.archiver import ArchiveConfig, Archiver
from archive.sources import service_sources
from service.settings import Settings


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return tmp_path / "lake"


@pytest.fixture
def make_archiver(redis_client: redis.Redis, settings: Settings, lake: Path) -> Callable[..., Archiver]:
    def build(**overrides: object) -> Archiver:
        config = ArchiveConfig(lake=lake, group="archiver", consumer="test-0", **overrides)  # type: ignore[arg-type]
        return Archiver(
            redis_client, service_sources(redis_client, settings.decision_stream, settings.feedback_stream), config
        )

    return build
