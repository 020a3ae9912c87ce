"""Joining rewards to decisions in a window, as Azure Personalizer's Reward API does.

A decision's reward is made of the feedback events for its request id that arrive within
`window_seconds` of the decision: each event's signals are reduced to one number by the configured
weights (the simulator's business weights by default, seed 001's r_t), and the events are aggregated
by the configured rule, `sum` (every event counts: one event per served item adds up to the request
reward) or `first` (the earliest event alone, Personalizer's "earliest"). A decision whose window
closes with no on-time event takes `default_reward`. Feedback later than the window (marked late by
the service, or found late here against the decision's time) is kept apart in `late`, never merged.

The joiner is fed records in any order (feedback may be read before its decision) and releases a
decision once its window has closed. Torch-free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from contracts.decision_record import DecisionRecord
from contracts.feedback_record import FeedbackRecord


@dataclass(frozen=True)
class JoinConfig:
    window_seconds: float = 600.0  # the service's `reward_window_seconds`
    rule: Literal["sum", "first"] = "sum"
    default_reward: float = 0.0
    weights: Mapping[str, float] = field(default_factory=dict)  # signal → weight; an unlisted signal weighs 0


@dataclass(frozen=True)
class JoinedDecision:
    decision: DecisionRecord
    reward: float
    events: int  # on-time feedback events joined; 0 means the default reward was used


@dataclass
class JoinResult:
    joined: list[JoinedDecision] = field(default_factory=list)
    late: list[FeedbackRecord] = field(default_factory=list)  # stored apart, not in any reward


def event_reward(event: FeedbackRecord, weights: Mapping[str, float]) -> float:
    """One feedback event as a number: Σ_signal weight·value."""
    return float(sum(weights.get(name, 0.0) * value for name, value in event.rewards.items()))


class RewardJoiner:
    """Holds decisions until their window closes, and feedback until its decision is seen."""

    def __init__(self, config: JoinConfig) -> None:
        self.config = config
        self._decisions: dict[str, DecisionRecord] = {}
        self._feedback: dict[str, list[FeedbackRecord]] = defaultdict(list)
        self._closed: dict[str, float] = {}  # request id → decision time, for decisions already released

    def add_decision(self, record: DecisionRecord) -> None:
        self._decisions[record.request_id] = record

    def add_feedback(self, event: FeedbackRecord) -> None:
        self._feedback[event.request_id].append(event)

    def close(self, now: float) -> JoinResult:
        """Release every decision whose window has closed by `now`, and every late event seen so far."""
        result = JoinResult()
        window = self.config.window_seconds
        for request_id, decision in list(self._decisions.items()):
            if decision.time + window > now:
                continue
            events = sorted(self._feedback.pop(request_id, []), key=lambda e: e.time)
            on_time = [e for e in events if not e.late and e.time - decision.time <= window]
            result.late += [e for e in events if e not in on_time]
            result.joined.append(JoinedDecision(decision, self._reward(on_time), len(on_time)))
            self._closed[request_id] = decision.time
            del self._decisions[request_id]
        # Feedback for a released decision can only be late; keep it apart.
        for request_id in [r for r in self._feedback if r in self._closed]:
            result.late += self._feedback.pop(request_id)
        return result

    def waiting(self) -> tuple[int, int]:
        """(decisions whose window is open, request ids with feedback but no decision seen yet)."""
        return len(self._decisions), sum(1 for r in self._feedback if r not in self._decisions)

    def _reward(self, events: list[FeedbackRecord]) -> float:
        if not events:
            return self.config.default_reward
        weights = self.config.weights
        if self.config.rule == "first":
            return event_reward(events[0], weights)
        return sum(event_reward(e, weights) for e in events)
