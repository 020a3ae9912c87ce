"""deploy/observability: the alert rules pass promtool and fire when they should; the dashboard and
the rules query only metrics the service exposes (service/metrics.py), so a rename breaks this test."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

from prometheus_client.metrics_core import Metric

from service.metrics import Metrics
from tests.deploy.manifests import DEPLOY, documents
from tests.deploy.tools import require

OBSERVABILITY = DEPLOY / "observability"
RULES = OBSERVABILITY / "prometheus-rules.yaml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
METRIC = re.compile(r"\bcascade_[a-z_]+")


def exposed_series() -> set[str]:
    """Every series name the service's registry can expose (counters as _total, histograms' parts)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    families: list[Metric] = list(Metrics().registry.collect())
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return panels + [note["expr"] for note in dashboard["annotations"]["list"]]


def rule_queries() -> list[str]:
    (rules,) = documents(RULES)
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = require("promtool")

    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    tested = subprocess.run(
        [promtool, "test", "rules", "prometheus-rules.test.yaml"],
        cwd=OBSERVABILITY,
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_rules_alert_on_p99_errors_spool_growth_drops_and_a_stale_worker() -> None:
    queries = "\n".join(rule_queries())

    for series in (
        "cascade_request_seconds_bucket",
        "cascade_requests_total",
        "cascade_decision_log_spooled_total",
        "cascade_decision_log_dropped_total",
        "cascade_serving_revision",
    ):
        assert series in queries


def test_the_rules_and_the_dashboard_query_only_series_the_service_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for query in [*rule_queries(), *dashboard_queries(dashboard)] for name in METRIC.findall(query)}

    # Recording rules (cascade:...) do not match the pattern: only raw series are checked.
    assert used
    assert used - exposed_series() == set()


def test_the_dashboard_shows_requests_phases_the_log_versions_and_swaps() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = "\n".join(dashboard_queries(dashboard))

    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    assert all(panel["targets"] for panel in dashboard["panels"])
    for needed in (
        "cascade_requests_total",
        "cascade_phase_seconds_bucket",
        "cascade_decision_log_queue_depth",
        "cascade_decision_log_spooled_total",
        "by (policy, version)",
        "cascade_swaps_total",
    ):
        assert needed in queries
