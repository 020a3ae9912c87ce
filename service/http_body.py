"""Reading a request body within the configured size limit, before anything parses it."""

from __future__ import annotations

from fastapi import Request

from service.problems import body_too_large, unsupported_media_type

JSON_MEDIA_TYPE = "application/json"


async def read_json_body(request: Request, limit: int) -> bytes:
    """The body bytes of a JSON request; 415 for another media type, 413 past `limit` bytes.

    The limit is enforced on the bytes actually received, not only on Content-Length, so a
    client that lies about (or omits) its length still cannot make a worker buffer more.
    """
    media_type = request.headers.get("content-type", JSON_MEDIA_TYPE).split(";", 1)[0].strip().lower()
    if media_type != JSON_MEDIA_TYPE:
        raise unsupported_media_type(media_type)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)
