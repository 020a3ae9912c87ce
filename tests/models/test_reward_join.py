"""Rewards joined to real logged decisions in a window: sum or first, a default, late feedback apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from contracts.decision_record import DecisionRecord
from contracts.feedback_record import FeedbackRecord
from models.log.reader import DecisionReader, FeedbackReader
from models.log.reward_join import JoinConfig, RewardJoiner
from service.settings import Settings
from tests.redis_streams import the_shard, wait_for_stream

WEIGHTS = {"watch_time": 1.0, "like": 8.0}


@pytest.fixture
def decisions(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> list[DecisionRecord]:
    """Three real decision records, read back from the stream by a consumer group."""
    for _ in range(3):
        client.post("/v1/rank", json=make_request(n_candidates=30, k=2))
    wait_for_stream(redis_client, settings.decision_stream, 3)
    reader = DecisionReader(redis_client, the_shard(redis_client, settings.decision_stream), "joiners", "j1")
    reader.ensure_group()
    return [d.record for d in reader.read_all()]


def _event(decision: DecisionRecord, after: float, rewards: dict[str, float], late: bool = False) -> FeedbackRecord:
    return FeedbackRecord(decision.request_id, f"e{after}", decision.time + after, rewards, late=late)


def test_sum_rule_adds_on_time_events_defaults_the_silent_and_keeps_late_apart(
    decisions: list[DecisionRecord],
) -> None:
    a, b, c = decisions
    joiner = RewardJoiner(JoinConfig(window_seconds=10.0, rule="sum", default_reward=-1.0, weights=WEIGHTS))
    for record in decisions:
        joiner.add_decision(record)
    late_by_time = _event(a, 11.0, {"like": 1.0})
    marked_late = _event(c, 1.0, {"watch_time": 5.0}, late=True)
    for event in (_event(a, 1.0, {"watch_time": 2.0}), _event(a, 2.0, {"like": 1.0, "share": 1.0}), late_by_time):
        joiner.add_feedback(event)
    joiner.add_feedback(marked_late)

    assert joiner.close(now=a.time + 5.0).joined == []  # no window has closed yet
    result = joiner.close(now=max(d.time for d in decisions) + 10.0)

    rewards = {j.decision.request_id: (j.reward, j.events) for j in result.joined}
    assert rewards == {a.request_id: (2.0 + 8.0, 2), b.request_id: (-1.0, 0), c.request_id: (-1.0, 0)}
    assert sorted(e.event_id for e in result.late) == sorted([late_by_time.event_id, marked_late.event_id])

    straggler = _event(b, 30.0, {"like": 1.0})  # its decision was released: it can only be late
    joiner.add_feedback(straggler)
    assert joiner.close(now=b.time + 60.0).late == [straggler]


def test_first_rule_takes_the_earliest_event_whatever_the_arrival_order(decisions: list[DecisionRecord]) -> None:
    a = decisions[0]
    joiner = RewardJoiner(JoinConfig(window_seconds=10.0, rule="first", weights=WEIGHTS))
    joiner.add_feedback(_event(a, 3.0, {"like": 1.0}))  # read before its decision, and before the earlier event
    joiner.add_decision(a)
    joiner.add_feedback(_event(a, 1.0, {"watch_time": 2.5}))

    (joined,) = joiner.close(now=a.time + 10.0).joined
    assert (joined.reward, joined.events) == (2.5, 2)


def test_feedback_posted_to_the_service_is_read_by_a_consumer_group_and_joined(
    client: TestClient, settings: Settings, redis_client: redis.Redis, decisions: list[DecisionRecord]
) -> None:
    target = decisions[1]
    for item, watch in (("i1", 1.5), ("i2", 0.5)):
        answer = client.post(
            "/v1/feedback", json={"request_id": target.request_id, "item_id": item, "rewards": {"watch_time": watch}}
        )
        assert answer.status_code == 202
    reader = FeedbackReader(redis_client, settings.feedback_stream, "joiners", "j1")
    reader.ensure_group()
    events = reader.read_all()
    joiner = RewardJoiner(JoinConfig(window_seconds=settings.reward_window_seconds, weights=WEIGHTS))
    for record in decisions:
        joiner.add_decision(record)
    for event in events:
        joiner.add_feedback(event.record)

    result = joiner.close(now=max(d.time for d in decisions) + settings.reward_window_seconds)

    assert reader.ack(events) == 2
    assert {j.decision.request_id: j.reward for j in result.joined}[target.request_id] == 2.0
    assert result.late == []
