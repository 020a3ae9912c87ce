"""Fixtures shared by the service tests: the routing and admin ones, and the decision log's own Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import Settings
from tests.versions import TOKEN, add_version, private_store


@pytest.fixture
def admin_settings(settings: Settings, store: Path, tmp_path: Path) -> Settings:
    """A private store with two more versions of the demo policy, an admin token and fast polling."""
    own = private_store(store, tmp_path / "store")
    for version in ("v2", "v3"):
        add_version(own, version)
    return settings.model_copy(update={"store": own, "admin_token": TOKEN, "routing_poll_seconds": 0.05})
