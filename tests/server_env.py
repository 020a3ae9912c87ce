"""The environment of a `cascade serve` a test starts against the session's shared Redis: its own key
namespace (routing, decision and feedback streams) and its own spool, so no two tests see each other's keys."""

from __future__ import annotations

from pathlib import Path


def isolated_env(redis_url: str, namespace: str, spool: Path, **settings: str) -> dict[str, str]:
    """REDIS_URL and the namespaced keys and spool, plus any `CASCADE_*` settings given by name."""
    return {
        "REDIS_URL": redis_url,
        "CASCADE_ROUTING_NAMESPACE": namespace,
        "CASCADE_DECISION_STREAM": f"{namespace}:decisions",
        "CASCADE_FEEDBACK_STREAM": f"{namespace}:feedback",
        "CASCADE_LOG_SPOOL_DIR": str(spool),
        **settings,
    }
