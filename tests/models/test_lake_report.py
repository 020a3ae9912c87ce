"""`cascade report` from a real lake: per version and arm, the numbers the page shows are the log's."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from archive.archiver import ArchiveConfig, Archiver
from archive.sources import service_sources
from cascade_cli import app
from contracts import decision_record
from models.log.reward_join import JoinConfig
from models.reports.lake import effective_sample_size, summarize
from service.settings import Settings
from tests.feedback_posting import post_feedback
from tests.redis_streams import wait_for_stream


def test_the_effective_sample_size_of_inverse_propensities() -> None:
    assert effective_sample_size(np.full(40, -3.0)) == pytest.approx(40.0)
    # One decision 100x less likely than the other nine: its weight dominates, the log is worth ~1.2 decisions.
    assert effective_sample_size(np.log([0.001] + [0.1] * 9)) == pytest.approx(109**2 / (100**2 + 9), rel=1e-9)
    assert effective_sample_size(np.array([-800.0, -1.0])) == pytest.approx(1.0)  # no overflow
    assert effective_sample_size(np.zeros(0)) == 0.0


def test_the_report_shows_each_version_and_arm_of_the_lake(
    client: TestClient,
    settings: Settings,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    ids = []
    for _ in range(30):
        answer = client.post("/v1/rank", json=make_request(n_candidates=30, k=2))
        assert answer.status_code == 200
        ids.append(answer.json()["request_id"])
    for request_id in ids[:12]:
        post_feedback(client, request_id, {"like": 1.0})
    entries = wait_for_stream(redis_client, settings.decision_stream, 30)
    records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
    lake = tmp_path / "lake"
    sources = service_sources(redis_client, settings.decision_stream, settings.feedback_stream)
    Archiver(redis_client, sources, ArchiveConfig(lake, "archiver", "t")).drain()

    (summary,) = summarize(lake, JoinConfig(window_seconds=600), now=time.time() + 601)
    explored = [r for r in records if r.explored]
    assert (summary.policy, summary.arm, summary.decisions) == ("demo", "control", 30)
    assert summary.version == records[0].version
    assert summary.join_rate == pytest.approx(12 / 30) and summary.reward_per_request == pytest.approx(12 / 30)
    assert summary.exploration_rate == pytest.approx(len(explored) / 30)
    assert summary.ess == pytest.approx(effective_sample_size(np.array([r.log_prob for r in explored])))
    assert summary.smallest_log_propensities == sorted(r.log_prob for r in explored)[:5]
    actions = np.array([r.fusion.action for r in records])
    assert summary.action_std == pytest.approx(actions.std(axis=0).tolist())

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "--lake", str(lake), "--out", str(out), "--window", "0.001"])
    assert result.exit_code == 0, result.output
    page = (out / "report.md").read_text()
    # A window of 1 ms has closed on every decision, and every event came after it: all late.
    assert f"| demo | {summary.version} | control | 30 | 0.0% | 0.0000 |" in page
    for plot in ("rates.png", "actions.png", "propensities.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({plot})" in page
