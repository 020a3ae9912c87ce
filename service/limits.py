"""Per-request size limits beyond the body's byte limit: candidates, k, reward keys and their names.

The schema (service/schema.py) publishes the ceilings in openapi.yaml, so msgspec refuses anything past
them while decoding; the settings may lower them per deployment, checked here right after decoding,
before any array is built. Each refusal is a 422 naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.problems import invalid_field
from service.schema import (
    MAX_CANDIDATES,
    MAX_K,
    MAX_NAME_LENGTH,
    MAX_REWARD_KEYS,
    Candidates,
    FeedbackRequest,
    FusionRequest,
    RankRequest,
)


@dataclass(frozen=True)
class RequestLimits:
    """The limits one deployment enforces (Settings: max_candidates, max_k, max_reward_keys, max_name_length)."""

    max_candidates: int = MAX_CANDIDATES
    max_k: int = MAX_K
    max_reward_keys: int = MAX_REWARD_KEYS
    max_name_length: int = MAX_NAME_LENGTH

    def _candidates(self, candidates: Candidates | None) -> None:
        if candidates is not None and len(candidates.ids) > self.max_candidates:
            raise invalid_field(
                "candidates.ids", f"at most {self.max_candidates} candidates per request, got {len(candidates.ids)}"
            )

    def rank(self, request: RankRequest) -> RankRequest:
        self._candidates(request.candidates)
        if request.k > self.max_k:
            raise invalid_field("k", f"k must be at most {self.max_k}, got {request.k}")
        return request

    def fusion(self, request: FusionRequest) -> FusionRequest:
        self._candidates(request.candidates)
        return request

    def feedback(self, request: FeedbackRequest) -> FeedbackRequest:
        rewards = request.rewards
        if len(rewards) > self.max_reward_keys:
            raise invalid_field("rewards", f"at most {self.max_reward_keys} reward signals, got {len(rewards)}")
        for name, value in rewards.items():
            if len(name) > self.max_name_length:
                raise invalid_field(
                    "rewards", f"reward names are at most {self.max_name_length} characters, got {len(name)}"
                )
            # msgpack carries NaN and ±inf as they are, JSON overflows 1e999 to inf: refused in every codec.
            if not math.isfinite(value):
                raise invalid_field(f"rewards.{name}", "reward values must be finite numbers (no NaN or Infinity)")
        return request
