"""Sessions: a user keeps sending requests until they leave, and they leave when recent requests disappoint.

One session is the Kuaishou request-level episode (seed 001: "requests from opening the app to leaving
the app"). B sessions run side by side (vectorised over users). After each request t the user's
satisfaction is an exponential average of how much of the served items they watched,

    q_t = mean over served items of E[watch] / max_watch_time          (in (0, 1))
    sat_t = memory·sat_{t−1} + (1 − memory)·q_t,     sat_0 = reference
    P(leave after t) = σ(leave_bias − leave_slope·(sat_t − reference))

and the session also ends at `max_depth` requests. The request reward is the business-weighted sum of
all responses (SimConfig.business_weights), so sparse events are worth a lot *now*, while only watch time
keeps the user in the app: a policy that maximises the immediate reward (γ = 0) tends to serve
"interaction bait" and shortens sessions; the long-term return Σ_t r_t (and total watch time) prefers
more watch time. That gap is what γ > 0, multi-critic and the constrained methods are measured on.

The policy sees the request context followed by the session features named in
`SimConfig.session_features` ("depth": requests so far / max_depth; "satisfaction": sat_{t−1}).
Satisfaction moves on *expected* watch time (the user's experience of the items' quality); randomness
enters through the leave draw, the candidate pools and the sampled responses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.sim.simulator import FloatArray, IntArray, Requests, Responses, Simulator, _sigmoid


@dataclass(frozen=True)
class SessionConfig:
    max_depth: int = 30
    memory: float = 0.5  # weight of the previous satisfaction in the running average
    reference: float = 0.9  # neutral satisfaction (≈ a uniform fusion's watch ratio of the top 10); sat_0
    leave_bias: float = -2.2  # logit of leaving at neutral satisfaction (≈ 10% per request)
    leave_slope: float = 25.0  # how strongly a drop in watch ratio drives users away


@dataclass(frozen=True)
class SessionStep:
    """What the B users did after one request each."""

    responses: Responses  # sampled / expected [B, k, objectives]
    objective_rewards: FloatArray  # [B, objectives]: Σ over served items, business-weighted, sampled
    expected_objective_rewards: FloatArray  # [B, objectives]: the same with expected responses
    done: np.ndarray  # [B] bool: the session ended after this request (left or max depth)
    depth: IntArray  # [B] requests served in the session so far, this one included


class Sessions:
    """B concurrent sessions. `requests()` draws the next request of each slot, `step(items)` serves it.

    With `refill=True` a slot whose session ended starts a new user's session at once (a training
    stream); with `refill=False` it stays ended (`active` is False) so an evaluation can follow a fixed
    set of users to the end of their sessions.
    """

    def __init__(
        self,
        sim: Simulator,
        n: int,
        rng: np.random.Generator,
        config: SessionConfig | None = None,
        n_candidates: int = 200,
        refill: bool = True,
        users: IntArray | None = None,
    ) -> None:
        self.sim, self.rng, self.n_candidates, self.refill = sim, rng, n_candidates, refill
        self.config = config or SessionConfig()
        # `users` [n]: who the sessions start with (a search stratified by segment); else drawn uniformly.
        if users is not None and len(users) != n:
            raise ValueError(f"users has {len(users)} rows for {n} sessions")
        self.users = sim.sample_users(n, rng) if users is None else np.asarray(users, dtype=np.int64).copy()
        self.depth = np.zeros(n, dtype=np.int64)
        self.satisfaction = np.full(n, self.config.reference)
        self.active = np.ones(n, dtype=bool)
        self._weights = np.asarray(sim.config.business_weights, dtype=np.float64)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def session_features(self) -> FloatArray:
        """[B, len(session_features)] float32, in SimConfig.session_features order."""
        columns = {
            "depth": self.depth / self.config.max_depth,
            "satisfaction": self.satisfaction,
        }
        names = self.sim.config.session_features
        if not names:
            return np.zeros((len(self), 0), dtype=np.float32)
        return np.stack([columns[name] for name in names], axis=1).astype(np.float32)

    def requests(self) -> Requests:
        """The next request of every slot (ended slots too, when not refilled: their rows are ignored)."""
        n = len(self)
        return Requests(
            users=self.users.copy(),
            user_features=self.sim.user_features[self.users],
            context=self.sim.sample_contexts(n, self.rng),
            candidates=self.sim.candidate_pools(n, self.n_candidates, self.rng),
        )

    def step(self, requests: Requests, items: IntArray) -> SessionStep:
        """Serve items [B, k] for `requests`; update satisfaction, draw who leaves, refill if asked."""
        cfg, sim = self.config, self.sim
        responses = sim.respond(requests.users, items, requests.context, self.rng)
        dense = np.asarray(sim.config.dense_mask)
        watch_ratio = responses.expected[..., dense].mean(axis=(1, 2)) / sim.config.max_watch_time
        self.satisfaction = cfg.memory * self.satisfaction + (1 - cfg.memory) * watch_ratio
        self.depth = self.depth + 1
        leave = _sigmoid(cfg.leave_bias - cfg.leave_slope * (self.satisfaction - cfg.reference))
        done = (self.rng.random(len(self)) < leave) | (self.depth >= cfg.max_depth)
        step = SessionStep(
            responses=responses,
            objective_rewards=responses.sampled.sum(axis=1) * self._weights,
            expected_objective_rewards=responses.expected.sum(axis=1) * self._weights,
            done=done,
            depth=self.depth.copy(),
        )
        if self.refill:
            n_new = int(done.sum())
            self.users[done] = sim.sample_users(n_new, self.rng)
            self.depth[done] = 0
            self.satisfaction[done] = cfg.reference
        else:
            self.active &= ~done
        return step
