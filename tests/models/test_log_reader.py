"""The trainer's side of the decision log: a consumer group on the real stream, in real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from models.log.reader import DecisionReader
from models.ope import gaussian_log_prob, served_fusion, snips
from service.settings import Settings
from tests.redis_streams import the_shard, wait_for_stream


def _serve(client: TestClient, make_request: Callable[..., dict[str, Any]], count: int) -> list[str]:
    return [client.post("/v1/rank", json=make_request(n_candidates=40, k=3)).json()["request_id"] for _ in range(count)]


def test_records_stay_pending_until_acknowledged(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    served = _serve(client, make_request, 6)
    wait_for_stream(redis_client, settings.decision_stream, 6)
    reader = DecisionReader(redis_client, the_shard(redis_client, settings.decision_stream), "trainers", "t1")
    reader.ensure_group()
    reader.ensure_group()  # idempotent

    batch = reader.read(count=10)

    assert [d.record.request_id for d in batch] == served
    assert reader.pending() == 6
    assert reader.ack(batch[:4]) == 4
    assert reader.pending() == 2
    assert reader.read(count=10) == []  # delivered records are not delivered again to the group


def test_deleted_records_leave_the_stream_and_the_rest_stay(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    served = _serve(client, make_request, 5)
    wait_for_stream(redis_client, settings.decision_stream, 5)
    reader = DecisionReader(redis_client, the_shard(redis_client, settings.decision_stream), "trainers", "t1")
    reader.ensure_group()
    batch = reader.read(count=10)
    reader.ack(batch[:3])

    assert reader.delete(batch[:3]) == 3
    assert reader.delete([]) == 0

    shard = the_shard(redis_client, settings.decision_stream)
    assert redis_client.xlen(shard) == 2
    kept = redis_client.xrange(shard)
    assert [decision_record.decode(fields[decision_record.STREAM_FIELD]).request_id for _, fields in kept] == served[3:]


def test_a_consumer_killed_mid_batch_has_its_records_claimed_by_another(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    served = _serve(client, make_request, 10)
    wait_for_stream(redis_client, settings.decision_stream, 10)
    dying = DecisionReader(
        redis_client, the_shard(redis_client, settings.decision_stream), "trainers", "dying", claim_idle_ms=50
    )
    dying.ensure_group()
    taken = dying.read(count=4)  # ...and the process dies before acknowledging them
    survivor = DecisionReader(
        redis_client, the_shard(redis_client, settings.decision_stream), "trainers", "survivor", claim_idle_ms=50
    )
    time.sleep(0.1)  # past the idle time after which a record counts as abandoned

    first = survivor.read(count=4)
    survivor.ack(first)  # used durably, so they are not abandoned a second time
    rest = survivor.read(count=10)
    survivor.ack(rest)

    assert [d.record.request_id for d in taken] == served[:4]
    assert [d.record.request_id for d in first] == served[:4]  # claimed, not lost
    assert [d.record.request_id for d in rest] == served[4:]
    assert survivor.pending() == 0


def test_served_records_give_the_propensity_the_service_logged(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> None:
    """The logged log_prob is the Gaussian log-density of the raw draw: recomputing it from the record's
    mean and std must agree, or every importance weight built on the log would be wrong."""
    for _ in range(5):
        assert client.post("/v1/rank", json=make_request(n_candidates=40, k=3)).status_code == 200
    entries = wait_for_stream(redis_client, settings.decision_stream, 5)
    records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]

    logged = served_fusion(records)
    means = np.array([r.fusion.mean for r in records])
    stds = np.array([r.fusion.std for r in records])

    assert len(logged) == 5
    np.testing.assert_allclose(logged.behaviour_log_prob, gaussian_log_prob(logged.raw_actions, means, stds), atol=1e-4)
    on_policy = logged.logged_rewards(np.arange(5.0), gaussian_log_prob(logged.raw_actions, means, stds))
    assert snips(on_policy).value == pytest.approx(2.0, abs=1e-3)
