"""Prometheus metrics of one worker, on a registry of its own so apps built in tests do not collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from contracts.decision_record import Timings

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The service's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cascade_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cascade_request_seconds",
            "Time from body received to response built, by endpoint, policy and version",
            ["endpoint", "policy", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ort_seconds = Histogram(
            "cascade_ort_seconds",
            "onnxruntime time of the cascade graph",
            ["policy", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.phase_seconds = Histogram(
            "cascade_phase_seconds",
            "Time per phase of a request: decode (body to tensors), compute (the cascade graph), respond",
            ["endpoint", "phase"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "cascade_requests_in_flight",
            "Rank and fusion requests this worker is reading, computing or answering",
            registry=self.registry,
        )
        self.client_disconnects = Counter(
            "cascade_client_disconnects",
            "Requests whose client hung up before its body arrived (not errors)",
            ["endpoint"],
            registry=self.registry,
        )
        self.bundle_loads = Counter(
            "cascade_bundle_loads",
            "Bundles verified, opened and warmed by this worker (once per version it ever routes)",
            ["policy"],
            registry=self.registry,
        )
        self.swaps = Counter("cascade_swaps", "Routing changes applied", ["policy"], registry=self.registry)
        self.swap_failures = Counter(
            "cascade_swap_failures",
            "Routing changes refused (bundle failed to load)",
            ["policy"],
            registry=self.registry,
        )
        self.serving_revision = Gauge(
            "cascade_serving_revision",
            "Routing revision this worker serves",
            ["policy"],
            registry=self.registry,
        )
        self.shadow_skipped = Counter(
            "cascade_shadow_skipped",
            "Shadow scorings skipped: feature schema differs from the served one",
            ["policy"],
            registry=self.registry,
        )
        self.log_queue_depth = Gauge(
            "cascade_decision_log_queue_depth", "Decision records waiting for Redis", registry=self.registry
        )
        self.log_written = Counter(
            "cascade_decision_log_written", "Decision records written to Redis", registry=self.registry
        )
        self.log_spooled = Counter(
            "cascade_decision_log_spooled", "Decision records written to the local spool", registry=self.registry
        )
        self.log_replayed = Counter(
            "cascade_decision_log_replayed", "Spooled decision records replayed to Redis", registry=self.registry
        )
        self.log_dropped = Counter(
            "cascade_decision_log_dropped",
            "Decision records dropped: the spool hit its disk limit",
            registry=self.registry,
        )
        self.log_write_failures = Counter(
            "cascade_decision_log_write_failures",
            "Batches Redis refused (then spooled)",
            registry=self.registry,
        )
        self.log_deduplicated = Counter(
            "cascade_decision_log_deduplicated",
            "Decision records a replay or retry found already in the stream (not appended twice)",
            registry=self.registry,
        )
        self.log_lost_on_crash = Counter(
            "cascade_decision_log_lost_on_crash",
            "Answered decision records a crashed worker never wrote (found when a live worker adopts its ledger)",
            registry=self.registry,
        )
        self.feedback = Counter(
            "cascade_feedback",
            "Feedback events by outcome: accepted, late, duplicate, unknown_request",
            ["outcome"],
            registry=self.registry,
        )

    def observe(self, endpoint: str, policy: str, version: str, timings: Timings, seconds: float) -> None:
        """Account one served request: its count, its latency and the time of each phase."""
        self.requests.labels(endpoint, "200").inc()
        self.latency.labels(endpoint, policy, version).observe(seconds)
        phases = self.phase_seconds
        phases.labels(endpoint, "decode").observe(timings.decode_ms / 1000)
        phases.labels(endpoint, "compute").observe(timings.compute_ms / 1000)
        phases.labels(endpoint, "respond").observe(max(0.0, seconds - timings.total_ms / 1000))
