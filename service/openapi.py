"""Publishing the msgspec schema (service/schema.py) in FastAPI's OpenAPI document.

Routes read raw bytes for speed, so FastAPI cannot infer their bodies; these helpers point
each route at the msgspec-generated component instead, keeping one declaration per type.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.body import JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE
from service.problems import PROBLEM_MEDIA_TYPE, Problem

_REF = "#/components/schemas/{name}"
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Malformed body",
    401: "No bearer token",
    403: "Wrong bearer token, or the admin API is disabled",
    409: "Conflict with the current state",
    404: "Unknown policy or version",
    408: "The body stopped arriving (no bytes for CASCADE_BODY_READ_TIMEOUT_SECONDS)",
    413: "Body too large",
    415: "Unsupported media type",
    422: "A field is invalid; `field` names it",
    503: "Not ready (no bundle loaded), Redis unavailable, or too many requests in progress (Retry-After)",
}


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _content(kind: type, msgpack: bool) -> dict[str, Any]:
    """The media types a Struct travels in: JSON always, msgpack (same schema) where the route takes it."""
    media = [JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE] if msgpack else [JSON_MEDIA_TYPE]
    return {name: {"schema": _ref(kind)} for name in media}


def body_of(kind: type, msgpack: bool = False) -> dict[str, Any]:
    """`openapi_extra` declaring a required body of this Struct (JSON, and msgpack when `msgpack`)."""
    return {"requestBody": {"required": True, "content": _content(kind, msgpack)}}


def responses_of(kind: type, *statuses: int, msgpack: bool = False) -> dict[int | str, dict[str, Any]]:
    """Route `responses`: 2xx with this Struct (msgpack too on `Accept: application/msgpack`), else problems."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status < 300:
            out[status] = {"description": _REASONS[status], "content": _content(kind, msgpack)}
        else:
            out[status] = {
                "description": _REASONS[status],
                "content": {PROBLEM_MEDIA_TYPE: {"schema": _ref(Problem)}},
            }
    return out


def described(responses: dict[int | str, dict[str, Any]], **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """Route `responses` with some statuses described for this route (keys like `s404`)."""
    for key, text in descriptions.items():
        responses[int(key.removeprefix("s"))]["description"] = text
    return responses


def install_openapi(app: FastAPI, kinds: list[type]) -> None:
    """Make `app.openapi()` carry the msgspec components of `kinds` and Problem."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        _, components = msgspec.json.schema_components([*kinds, Problem], ref_template=_REF)
        document.setdefault("components", {}).setdefault("schemas", {}).update(components)
        for path in document["paths"].values():
            for operation in path.values():
                # FastAPI adds a default 200 to every route; 202-only routes must not show it.
                responses = operation.get("responses", {})
                if "202" in responses and responses.get("200", {}).get("description") == "Successful Response":
                    responses.pop("200", None)
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
