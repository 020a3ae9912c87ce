"""The reward join in DuckDB over the Parquet lake equals the Python join (models/log/reward_join.py) on the
same events: real decisions from the service, feedback through the real feedback stream, archived into
real Parquet files (every row twice, as after an archiver crash between rename and acknowledgement)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import redis
from fastapi.testclient import TestClient

from archive.archiver import ArchiveConfig, Archiver
from archive.sources import service_sources
from contracts import decision_record, feedback_record
from contracts.decision_record import DecisionRecord, as_builtins, encode
from contracts.feedback_record import FeedbackRecord
from models.log.lake_join import join_lake
from models.log.reward_join import JoinConfig, JoinResult, RewardJoiner
from service.settings import Settings
from tests.redis_streams import the_shard, wait_for_stream

WEIGHTS = {"watch_time": 1.0, "like": 8.0}
WINDOW = 10.0


def _events(decisions: list[DecisionRecord]) -> list[FeedbackRecord]:
    a, b, c, d = decisions

    def event(of: DecisionRecord, after: float, rewards: dict[str, float], late: bool = False) -> FeedbackRecord:
        return FeedbackRecord(of.request_id, f"e{after}-{len(rewards)}", of.time + after, rewards, late=late)

    return [
        event(a, 3.0, {"like": 1.0}),  # sent before the earlier event: `first` must still take the earliest
        event(a, 1.0, {"watch_time": 2.5, "share": 4.0}),  # an unlisted signal weighs 0
        event(a, WINDOW + 1.0, {"like": 1.0}),  # after the window: late
        event(b, 2.0, {"watch_time": 1.0}, late=True),  # marked late by the service
        event(c, 0.5, {}),  # an event without signals: counts, worth 0
        event(c, WINDOW, {"watch_time": 0.25}),  # at the window's edge: on time
        FeedbackRecord("never-served", "e0", d.time, {"like": 1.0}),  # no decision: joined to nothing
    ]


@pytest.fixture
def logged(
    client: TestClient, settings: Settings, redis_client: redis.Redis, make_request: Callable[..., dict[str, Any]]
) -> tuple[list[DecisionRecord], list[FeedbackRecord]]:
    for _ in range(4):
        assert client.post("/v1/rank", json=make_request(n_candidates=30, k=2)).status_code == 200
    entries = wait_for_stream(redis_client, settings.decision_stream, 4)
    decisions = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
    events = _events(decisions)
    for event in events:  # through the real stream, as the service stores them
        redis_client.xadd(settings.feedback_stream, {feedback_record.STREAM_FIELD: feedback_record.encode(event)})
    return decisions, events


def _python_join(
    decisions: list[DecisionRecord], events: list[FeedbackRecord], config: JoinConfig, now: float
) -> JoinResult:
    joiner = RewardJoiner(config)
    for event in events:
        joiner.add_feedback(event)
    for record in decisions:
        joiner.add_decision(record)
    return joiner.close(now)


def _summary(result: JoinResult) -> tuple[dict[str, tuple[float, int]], list[tuple[str, str]]]:
    joined = {j.decision.request_id: (j.reward, j.events) for j in result.joined}
    return joined, sorted((e.request_id, e.event_id) for e in result.late)


@pytest.mark.parametrize("rule", ["sum", "first"])
def test_the_duckdb_join_over_the_lake_equals_the_python_join(
    logged: tuple[list[DecisionRecord], list[FeedbackRecord]],
    redis_client: redis.Redis,
    settings: Settings,
    tmp_path: Path,
    rule: Literal["sum", "first"],
) -> None:
    decisions, events = logged
    lake = tmp_path / "lake"
    groups = ("archiver", "second-archiver")  # every entry archived twice: readers must count it once
    for group in groups:  # both groups before either reads, so the first does not trim what the second needs
        for stream in (the_shard(redis_client, settings.decision_stream), settings.feedback_stream):
            redis_client.xgroup_create(stream, group, id="0", mkstream=True)
    for group in groups:
        config = ArchiveConfig(lake=lake, group=group, consumer="c")
        sources = service_sources(redis_client, settings.decision_stream, settings.feedback_stream)
        assert Archiver(redis_client, sources, config).drain() == len(decisions) + len(events)
    config = JoinConfig(window_seconds=WINDOW, rule=rule, default_reward=-1.0, weights=WEIGHTS)

    times = sorted(d.time for d in decisions)
    for now in (times[0] + WINDOW, times[1] + WINDOW + 1e-3, times[-1] + WINDOW + 60.0):
        python, duck = _summary(_python_join(decisions, events, config, now)), _summary(join_lake(lake, config, now))
        assert duck[1] == python[1]
        assert duck[0].keys() == python[0].keys()
        for request_id, (reward, count) in python[0].items():
            assert duck[0][request_id] == (pytest.approx(reward, rel=1e-12), count)

    final = join_lake(lake, config, times[-1] + WINDOW + 60.0)
    a, b, c, d = decisions
    expected = {"sum": 2.5 + 8.0, "first": 2.5}[rule]
    assert {j.decision.request_id: (j.reward, j.events) for j in final.joined} == {
        a.request_id: (expected, 2),
        b.request_id: (-1.0, 0),
        c.request_id: ({"sum": 0.25, "first": 0.0}[rule], 2),
        d.request_id: (-1.0, 0),
    }
    ordered = sorted(decisions, key=lambda r: (r.time, r.request_id))
    assert [as_builtins(j.decision) for j in final.joined] == [as_builtins(d) for d in ordered]  # every field
    assert [encode(j.decision) for j in final.joined] == [encode(d) for d in ordered]  # and the stored bytes
