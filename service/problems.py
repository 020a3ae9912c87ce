"""Errors as values with a type (RFC 9457 problem details), raised by the core without knowing HTTP.

The HTTP layer renders them as application/problem+json (service/responses.py), so the core modules
(ranker, decode, item catalog) import no web framework.
"""

from __future__ import annotations

import msgspec

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_ROOT = "https://cascade-serve.dev/problems/"


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details: `type` is stable, `detail` is for humans, `field` names the culprit."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None


class ProblemError(Exception):
    """Raised anywhere on the request path; the app turns it into a problem+json response."""

    def __init__(self, status: int, kind: str, title: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.field = field

    def to_problem(self, instance: str | None = None) -> Problem:
        return Problem(
            type=_TYPE_ROOT + self.kind,
            title=self.title,
            status=self.status,
            detail=self.detail,
            field=self.field,
            instance=instance,
        )


def invalid_field(field: str, detail: str) -> ProblemError:
    """422: the body parsed but a value is not acceptable."""
    return ProblemError(422, "invalid-field", "Invalid field", detail, field)


def malformed_body(detail: str) -> ProblemError:
    """400: the body is not a document of the declared media type."""
    return ProblemError(400, "malformed-body", "Malformed body", detail, "body")


def body_too_large(limit: int) -> ProblemError:
    return ProblemError(413, "body-too-large", "Body too large", f"request body exceeds {limit} bytes", "body")


def body_timeout(seconds: float, received: int) -> ProblemError:
    """408: the client stopped sending its body."""
    return ProblemError(
        408,
        "body-timeout",
        "Body read timeout",
        f"no body bytes for {seconds:g} s after {received} bytes; send the whole body promptly",
        "body",
    )


def unsupported_media_type(media_type: str) -> ProblemError:
    return ProblemError(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"content-type '{media_type}' is not accepted; send application/json (or application/msgpack where documented)",
        "content-type",
    )


def not_ready(detail: str) -> ProblemError:
    return ProblemError(503, "not-ready", "Service not ready", detail)


def redis_unavailable(detail: str) -> ProblemError:
    """503: the route reads or writes state in Redis, which does not answer right now."""
    return ProblemError(503, "redis-unavailable", "Redis unavailable", f"routing state unavailable: {detail}")


def unknown_policy(policy: str) -> ProblemError:
    return ProblemError(404, "unknown-policy", "Unknown policy", f"policy '{policy}' is not served here", "policy")


def unknown_request(request_id: str) -> ProblemError:
    """404: feedback for a request id the decision log has not recorded (or has forgotten)."""
    return ProblemError(
        404,
        "unknown-request",
        "Unknown request",
        f"no decision with request_id '{request_id}' is logged; a decision served a moment ago may not be "
        "logged yet (retry after Retry-After seconds), one older than the decision index is forgotten",
        "request_id",
    )
