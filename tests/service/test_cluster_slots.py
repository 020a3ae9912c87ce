"""On a Redis Cluster, names whose script keys would span slots are refused when the settings are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings

CLUSTER = "redis+cluster://127.0.0.1:7000"


def test_the_default_names_are_refused_on_a_cluster_naming_the_settings_to_change() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(redis_url=CLUSTER)
    message = str(refused.value)
    assert "CASCADE_DECISION_STREAM and CASCADE_FEEDBACK_STREAM" in message
    assert "CASCADE_ROUTING_NAMESPACE" in message


def test_the_cluster_flag_is_checked_like_the_cluster_scheme() -> None:
    with pytest.raises(ValidationError, match="feedback script"):
        Settings(redis_url="redis://127.0.0.1:7000", redis_cluster=True, routing_namespace="{cascade}")


def test_one_hash_tag_for_every_name_is_accepted_on_a_cluster() -> None:
    settings = Settings(
        redis_url=CLUSTER,
        decision_stream="{cascade}:decisions",
        feedback_stream="{cascade}:feedback",
        routing_namespace="{cascade}",
    )
    assert settings.decision_stream == "{cascade}:decisions"


def test_a_single_server_takes_any_names() -> None:
    assert Settings(redis_url="redis://127.0.0.1:6379").feedback_stream == "cascade:feedback"
