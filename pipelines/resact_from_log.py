"""ResAct (seed 004) trained on the service's own decision log, shipped as a new version of the bundle
that logged the decisions.

Decision records joined with their rewards in the Parquet lake (models/log/lake_join.py) become an
OfflineLog: s = the fusion state as logged, a_on = the served fusion action (the online policy's action,
explored or not: ResAct's CVAE reconstructs what the online policy does), r = the joined reward, s' from
the user's next decision in the same session (models/log/transitions.session_rows). ResAct trains
offline on it (models/algorithms/resact.py); its graphs (resact + rank_by_action, export/actor_graphs.py)
are added to a copy of the source bundle under a new version, so /v1/rank and /v1/fusion serve ResAct's
action once that version is activated.
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
from models.algorithms.resact import ResActConfig, StateLayout, make_resact, reconstruction_error, train_resact
from models.log.lake_join import join_lake
from models.log.reward_join import JoinConfig, JoinedDecision
from models.log.transitions import offline_log


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


def resact_version_from_lake(
    source: Path,
    out: Path,
    version: str,
    lake: Path,
    join: JoinConfig,
    config: ResActConfig,
    now: float,
    seed: int = 0,
) -> Manifest:
    """`resact_version_from_log` on the decisions of the lake (contracts/lake.py) whose reward window has
    closed by `now`, joined with their rewards in DuckDB."""
    joined = join_lake(lake, join, now).joined
    return resact_version_from_log(source, out, version, joined, config, seed)
