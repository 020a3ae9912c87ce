"""The reward join of models/log/reward_join.py as one DuckDB query over the Parquet lake (contracts/lake.py).

Same rules, stated once in SQL: a decision whose window has closed by `now` (time + window <= now) gets
the feedback events for its request id that are not marked late and came within `window_seconds` of it;
each event's signals are reduced to Σ weight·value (an unlisted signal weighs 0), the events are
aggregated by `sum` or `first` (the earliest), and a decision without on-time events takes
`default_reward`. Feedback of a closed decision that is marked late or came after the window is kept
apart (`late`). Rows the archiver wrote twice (a crash between rename and XACK) count once: the first
per request id, and per (request id, event id) for feedback. The lake is read in place, hive-partitioned,
so a filter on policy or hour skips whole folders; old and new files are read together by column name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from contracts.decision_record import DecisionRecord
from contracts.feedback_record import FeedbackRecord
from contracts.lake import ENTRY_COLUMN, PARTITION_KEYS, STREAM_COLUMN, Dataset, dataset_files, dataset_glob, from_row
from models.log.reward_join import JoinConfig, JoinedDecision, JoinResult

# Feedback's columns as the join reads them, for a lake that has no feedback file yet.
_NO_FEEDBACK = f"""
SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS event_id, NULL::DOUBLE AS "time",
       NULL::MAP(VARCHAR, DOUBLE) AS rewards, NULL::VARCHAR AS item_id, NULL::BOOLEAN AS late,
       NULL::VARCHAR AS hour, NULL::VARCHAR AS {STREAM_COLUMN}, NULL::VARCHAR AS {ENTRY_COLUMN}
WHERE false
"""


def _scan(lake: Path, dataset: Dataset) -> str:
    types = ", ".join(f"'{key}': 'VARCHAR'" for key in PARTITION_KEYS[dataset])
    return (
        f"SELECT * FROM read_parquet('{dataset_glob(lake, dataset)}', hive_partitioning = true, "
        f"hive_types = {{{types}}}, union_by_name = true)"
    )


def connect(lake: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake as two views, `decisions` and `feedback`, each row once."""
    con = duckdb.connect()
    order = f"{STREAM_COLUMN}, {ENTRY_COLUMN}"
    decisions = (
        f"{_scan(lake, 'decisions')} QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY {order}) = 1"
        if dataset_files(lake, "decisions")
        else None
    )
    feedback = (
        f"{_scan(lake, 'feedback')} QUALIFY row_number() OVER (PARTITION BY request_id, event_id ORDER BY {order}) = 1"
        if dataset_files(lake, "feedback")
        else _NO_FEEDBACK
    )
    if decisions is not None:
        con.execute(f"CREATE VIEW decisions AS {decisions}")
    con.execute(f"CREATE VIEW feedback AS {feedback}")
    return con


# $window, $now, $rule, $default; the `weights` table. The decisions' own columns come first, in file order.
JOIN_SQL = """
WITH closed AS (
    SELECT * FROM decisions WHERE "time" + $window <= $now
), signals AS (
    SELECT request_id, event_id, unnest(map_keys(rewards)) AS name, unnest(map_values(rewards)) AS value
    FROM feedback
), event_reward AS (
    SELECT s.request_id, s.event_id, sum(s.value * coalesce(w.weight, 0.0)) AS reward
    FROM signals s LEFT JOIN weights w USING (name) GROUP BY s.request_id, s.event_id
), events AS (
    SELECT f.request_id, f."time", coalesce(r.reward, 0.0) AS reward,
           coalesce(f.late, false) OR f."time" - c."time" > $window AS is_late
    FROM feedback f JOIN closed c USING (request_id) LEFT JOIN event_reward r USING (request_id, event_id)
), per_decision AS (
    SELECT request_id, count(*) AS events, sum(reward) AS total, arg_min(reward, "time") AS earliest
    FROM events WHERE NOT is_late GROUP BY request_id
)
SELECT c.*,
       coalesce(CASE WHEN $rule = 'first' THEN p.earliest ELSE p.total END, $default) AS _reward,
       coalesce(p.events, 0) AS _events
FROM closed c LEFT JOIN per_decision p USING (request_id)
ORDER BY c."time", c.request_id
"""

LATE_SQL = """
SELECT f.* FROM feedback f JOIN decisions d USING (request_id)
WHERE d."time" + $window <= $now AND (coalesce(f.late, false) OR f."time" - d."time" > $window)
ORDER BY f."time", f.request_id, f.event_id
"""


def _parameters(config: JoinConfig, now: float) -> dict[str, Any]:
    return {"window": config.window_seconds, "now": now, "rule": config.rule, "default": config.default_reward}


def _with_weights(con: duckdb.DuckDBPyConnection, config: JoinConfig) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE weights (name VARCHAR, weight DOUBLE)")
    if config.weights:
        con.executemany("INSERT INTO weights VALUES (?, ?)", [(k, float(v)) for k, v in config.weights.items()])


def joined_rows(con: duckdb.DuckDBPyConnection, config: JoinConfig, now: float) -> list[dict[str, Any]]:
    """The closed decisions as lake rows, each with `_reward` and `_events` (for reports and SQL users)."""
    _with_weights(con, config)
    return list(con.sql(JOIN_SQL, params=_parameters(config, now)).to_arrow_table().to_pylist())


def join_lake(lake: Path, config: JoinConfig, now: float) -> JoinResult:
    """Decisions whose reward window has closed by `now`, with their rewards, and the late feedback:
    the same result as RewardJoiner over the same events (tests/models/test_lake_join.py)."""
    if not dataset_files(lake, "decisions"):
        return JoinResult()
    con = connect(lake)
    try:
        rows = joined_rows(con, config, now)
        late = con.sql(LATE_SQL, params={"window": config.window_seconds, "now": now}).to_arrow_table().to_pylist()
    finally:
        con.close()
    return JoinResult(
        joined=[JoinedDecision(from_row(r, DecisionRecord), float(r["_reward"]), int(r["_events"])) for r in rows],
        late=[from_row(r, FeedbackRecord) for r in late],
    )
