"""ResAct (seed 004) trained on the service's own decision log, shipped as a new version of the bundle
that logged the decisions.

Decision records joined with their rewards (models/reward_join.py) become an OfflineLog: s = the fusion
state as logged, a_on = the served fusion action (the online policy's action, explored or not: ResAct's
CVAE reconstructs what the online policy does), r = the joined reward, s' from the user's next decision in
the same session (models/logged_a3c.session_rows). ResAct trains offline on it (models/resact.py); its
graphs (resact + rank_by_action, export/actor_graphs.py) are added to a copy of the source bundle under a
new version, so /v1/rank and /v1/fusion serve ResAct's action once that version is activated.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from contracts.manifest import MANIFEST_FILE, Manifest
from export.actor_graphs import add_actor_graphs
from models.logged_a3c import session_rows
from models.offline import OfflineLog
from models.resact import ResActConfig, StateLayout, make_resact, reconstruction_error, train_resact
from models.reward_join import JoinedDecision


def offline_log(joined: list[JoinedDecision], session_gap_seconds: float = 300.0) -> OfflineLog:
    """The served rank decisions of a joined log as ResAct's transitions, one row per decision."""
    rows = [row for row in session_rows(joined, session_gap_seconds) if row[0].decision.kind == "rank"]
    if not rows:
        raise ValueError("no served rank decisions in the log: nothing to reconstruct")
    # Rows come per user in time order and every session ends on a done row, so a running count numbers them.
    session_ids, current = [], 0
    for _, _, done in rows:
        session_ids.append(current)
        current += int(done)

    def matrix(values: list[list[float]]) -> np.ndarray:
        return np.asarray(values, dtype=np.float32)

    n = len(rows)
    return OfflineLog(
        states=matrix([j.decision.fusion.state for j, _, _ in rows]),
        raw_actions=matrix([j.decision.fusion.raw_action for j, _, _ in rows]),
        actions=matrix([j.decision.fusion.action for j, _, _ in rows]),
        log_probs=np.asarray([j.decision.log_prob for j, _, _ in rows], dtype=np.float64),
        rewards=np.asarray([j.reward for j, _, _ in rows], dtype=np.float32),
        next_states=matrix([s for _, s, _ in rows]),
        done=np.asarray([float(d) for _, _, d in rows], dtype=np.float32),
        session_ids=np.asarray(session_ids, dtype=np.int64),
        # ResAct reads no per-item data; the per-item (EnhancedRL) actor is not trained from this log.
        item_features=np.zeros((n, 0, 0), dtype=np.float32),
        predictions=np.zeros((n, 0, 0), dtype=np.float32),
    )


def resact_version_from_log(
    source: Path, out: Path, version: str, joined: list[JoinedDecision], config: ResActConfig, seed: int = 0
) -> Manifest:
    """Train ResAct on `joined` and write `out`: a copy of the bundle `source` with ResAct's graphs, as
    `version`. Its manifest's `training.resact_from_log` says what it learned from."""
    manifest = Manifest.model_validate_json((source / MANIFEST_FILE).read_text())
    log = offline_log(joined)
    schema = manifest.feature_schema
    low, high = torch.tensor(manifest.fusion.low), torch.tensor(manifest.fusion.high)
    # No session features in a service record's state: user columns are session-level, context request-level.
    layout = StateLayout.from_dims(schema.user_dim, schema.context_dim, 0)
    with torch.random.fork_rng(devices=[]):
        policy = make_resact(schema.user_dim + schema.context_dim, low, high, layout, config)
        before = reconstruction_error(policy, log, seed)
        train_resact(policy, log, config, seed)
        after = reconstruction_error(policy, log, seed)
    policy.eval()

    shutil.copytree(source, out)
    training = {
        **manifest.training,
        "resact_from_log": {
            "source_version": manifest.version,
            "decisions": len(log),
            "sessions": int(np.unique(log.session_ids).size),
            "reconstruction_error": [before, after],
            **asdict(config),
        },
    }
    created = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    renamed = manifest.model_copy(update={"version": version, "created_at": created, "training": training})
    (out / MANIFEST_FILE).write_text(renamed.model_dump_json(indent=2) + "\n")
    return add_actor_graphs(out, resact=policy, n_draws=config.n_draws)
