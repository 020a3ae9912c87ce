"""Joined decisions as training rows: (s, a, μ(a|s), r, s', done) per served decision, grouped per session.

A user's next decision within `session_gap_seconds` is s', otherwise the session is done. When the
service logged the candidates' matrices (CASCADE_LOG_CANDIDATE_FEATURES), the rows also carry what a
replay of each request's cascade needs (`CandidateReplay`). The trainers (models/algorithms/logged_a3c.py,
models/algorithms/replay_trainer.py) and the promotion gate (models/ope/gate.py) read these rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from contracts.packed_floats import Vector
from models.env.offline_data import OfflineLog
from models.log.reward_join import JoinedDecision


@dataclass(frozen=True)
class CandidateReplay:
    """The candidates of logged decisions, when the service logged their matrices
    (CASCADE_LOG_CANDIDATE_FEATURES): enough to replay each request's cascade with another fusion action
    (models/algorithms/replay_trainer.py). Every decision needs the same candidate count; row i ↔ the log's row i."""

    items: torch.Tensor  # [N, C, item_dim] the candidates' features, as served
    predictions: torch.Tensor  # [N, C, J] the upstream MTL model's predictions, as served
    served_rows: torch.Tensor  # [N, k] candidate rows of the served items, best first
    stage_sizes: tuple[int, ...]  # the stages' keep, as logged
    k: int

    def subset(self, rows: torch.Tensor) -> CandidateReplay:
        return CandidateReplay(
            self.items[rows], self.predictions[rows], self.served_rows[rows], self.stage_sizes, self.k
        )


@dataclass(frozen=True)
class LoggedTransitions:
    """Served decisions of a log as (s, a, μ(a|s), r, s', done), one row each (the explored ones only,
    unless built with `explored_only=False`)."""

    request_ids: list[str]
    user_ids: list[str]
    state: torch.Tensor  # [N, S] the fusion actor's input, as logged
    raw_action: torch.Tensor  # [N, A] the Gaussian draw the propensity refers to
    behaviour_log_prob: torch.Tensor  # [N] log μ(raw | s), logged unrounded
    reward: torch.Tensor  # [N] joined reward
    next_state: torch.Tensor  # [N, S]
    done: torch.Tensor  # [N] 1.0 at the end of a session
    explored: torch.Tensor | None = None  # [N] bool: the row's action was a Gaussian draw (has a propensity)
    replay: CandidateReplay | None = None  # the rows' candidates, if the log holds them

    def __len__(self) -> int:
        return len(self.request_ids)

    def subset(self, mask: np.ndarray) -> LoggedTransitions:
        rows = torch.from_numpy(np.flatnonzero(mask))
        keep = mask.tolist()
        return LoggedTransitions(
            request_ids=[r for r, k in zip(self.request_ids, keep, strict=True) if k],
            user_ids=[u for u, k in zip(self.user_ids, keep, strict=True) if k],
            state=self.state[rows],
            raw_action=self.raw_action[rows],
            behaviour_log_prob=self.behaviour_log_prob[rows],
            reward=self.reward[rows],
            next_state=self.next_state[rows],
            done=self.done[rows],
            explored=None if self.explored is None else self.explored[rows],
            replay=None if self.replay is None else self.replay.subset(rows),
        )

    def explored_rows(self) -> LoggedTransitions:
        """The rows whose action was explored: the only ones with a usable propensity."""
        if self.explored is None:
            return self
        return self.subset(self.explored.numpy())


SessionRow = tuple[JoinedDecision, Vector, bool]  # (decision, s' as the fusion state, done)


def session_rows(joined: list[JoinedDecision], session_gap_seconds: float = 300.0) -> list[SessionRow]:
    """Served decisions grouped per user session, in time order: a user's next decision within
    `session_gap_seconds` gives s', otherwise the session is done (s' = s, never bootstrapped)."""
    served = [j for j in joined if j.decision.arm != "shadow"]
    by_user: dict[str, list[JoinedDecision]] = defaultdict(list)
    for item in served:
        by_user[item.decision.user_id].append(item)
    rows: list[SessionRow] = []
    for decisions in by_user.values():
        decisions.sort(key=lambda j: j.decision.time)
        for current, following in zip(decisions, [*decisions[1:], None], strict=True):
            same_session = (
                following is not None and following.decision.time - current.decision.time <= session_gap_seconds
            )
            next_state = (
                following.decision.fusion.state if same_session and following else current.decision.fusion.state
            )
            rows.append((current, next_state, not same_session))
    return rows


def build_transitions(
    joined: list[JoinedDecision], session_gap_seconds: float = 300.0, explored_only: bool = True
) -> LoggedTransitions:
    """Per-user sessions of the served decisions, then the explored ones (all, without `explored_only`)
    as transitions."""
    rows = session_rows(joined, session_gap_seconds)
    if explored_only:
        rows = [row for row in rows if row[0].decision.explored]
    if not rows:
        raise ValueError("no explored, served decisions in the log: nothing to learn from")

    def tensor(values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32)

    def stacked(arrays: list[Vector]) -> torch.Tensor:  # the records' float32 arrays, one row each
        return torch.from_numpy(np.stack(arrays))

    return LoggedTransitions(
        request_ids=[j.decision.request_id for j, _, _ in rows],
        user_ids=[j.decision.user_id for j, _, _ in rows],
        state=stacked([j.decision.fusion.state for j, _, _ in rows]),
        raw_action=stacked([j.decision.fusion.raw_action for j, _, _ in rows]),
        behaviour_log_prob=torch.tensor([j.decision.log_prob for j, _, _ in rows], dtype=torch.float64),
        reward=tensor([j.reward for j, _, _ in rows]),
        next_state=stacked([s for _, s, _ in rows]),
        done=tensor([float(d) for _, _, d in rows]),
        explored=torch.tensor([j.decision.explored for j, _, _ in rows], dtype=torch.bool),
        replay=_candidate_replay([j for j, _, _ in rows]),
    )


def _candidate_replay(rows: list[JoinedDecision]) -> CandidateReplay | None:
    """The rows' logged candidate matrices, or None unless every row has them with one candidate count."""
    decisions = [j.decision for j in rows]
    candidates = [d.candidates for d in decisions]
    if any(c.features is None or c.predictions is None for c in candidates):
        return None
    if len({len(c.ids) for c in candidates}) != 1 or len({d.k for d in decisions}) != 1:
        return None
    stage_sizes = {tuple(stage.keep for stage in d.stages) for d in decisions}
    if len(stage_sizes) != 1:
        return None
    served_rows = []
    for d in decisions:
        row_of = {item_id: i for i, item_id in enumerate(d.candidates.ids)}
        served_rows.append([row_of[item_id] for item_id in d.served_ids])
    if len({len(r) for r in served_rows}) != 1:
        return None
    return CandidateReplay(
        items=torch.from_numpy(np.stack([c.features for c in candidates if c.features is not None])),
        predictions=torch.from_numpy(np.stack([c.predictions for c in candidates if c.predictions is not None])),
        served_rows=torch.tensor(served_rows, dtype=torch.long),
        stage_sizes=stage_sizes.pop(),
        k=decisions[0].k,
    )


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

    def matrix(values: list[Vector]) -> np.ndarray:
        return np.stack(values)  # float32 rows, as logged

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
