"""Encoding answers for HTTP: schema types as JSON or msgpack, errors as RFC 9457 problem+json.

The one place a core value becomes a response; service/openapi.py only publishes the schema.
"""

from __future__ import annotations

import msgspec
from fastapi import Request
from fastapi.responses import Response

from service.body import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE
from service.problems import PROBLEM_MEDIA_TYPE, ProblemError

_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def json_response(value: object, status: int = 200) -> Response:
    """A msgspec-encoded JSON response (the routes' one way of answering with a schema type)."""
    return Response(_encoder.encode(value), status_code=status, media_type=JSON_MEDIA_TYPE)


def encoded_response(value: object, msgpack: bool, status: int = 200) -> Response:
    """The same schema type as msgpack (when the client accepts it) or JSON."""
    content, media_type = encoded(value, msgpack)
    return Response(content, status_code=status, media_type=media_type)


def encoded(value: object, msgpack: bool) -> tuple[bytes, str]:
    """A schema type's bytes and media type, msgpack when the client accepts it, else JSON (the routes
    that send raw ASGI messages, service/hot_path.py, answer with these)."""
    if msgpack:
        return _msgpack_encoder.encode(value), MSGPACK_MEDIA_TYPE
    return _encoder.encode(value), JSON_MEDIA_TYPE


def problem_response(error: ProblemError, request: Request | None = None) -> Response:
    """Encode a ProblemError as an application/problem+json response."""
    instance = request.url.path if request is not None else None
    return Response(
        content=msgspec.json.encode(error.to_problem(instance)),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
    )
