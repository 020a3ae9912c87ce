"""Reading a request body within the configured size limit, before anything parses it."""

from __future__ import annotations

import asyncio

from fastapi import Request

from service.body import CODECS, JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, Body, Codec
from service.problems import body_timeout, body_too_large, unsupported_media_type


def media_type_of(request: Request) -> str:
    return request.headers.get("content-type", JSON_MEDIA_TYPE).split(";", 1)[0].strip().lower()


async def read_body(
    request: Request,
    limit: int,
    codecs: tuple[Codec, ...] = ("json", "msgpack"),
    chunk_timeout: float | None = None,
) -> Body:
    """The body bytes and their codec (by Content-Type); 415 for another media type, 413 past `limit` bytes.

    The limit is enforced on the bytes actually received, not only on Content-Length, so a
    client that lies about (or omits) its length still cannot make a worker buffer more. A client
    that stops sending for `chunk_timeout` seconds gets 408: the HTTP server bounds the headers'
    arrival, not the body's.
    """
    media_type = media_type_of(request)
    codec = CODECS.get(media_type)
    if codec is None or codec not in codecs:
        raise unsupported_media_type(media_type)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    received = 0
    loop = asyncio.get_running_loop()
    try:
        # One deadline, pushed back after each chunk: no task per chunk (a 1 MB body arrives in ~20).
        async with asyncio.timeout(chunk_timeout) as deadline:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise body_too_large(limit)
                chunks.append(chunk)
                if chunk_timeout is not None:
                    deadline.reschedule(loop.time() + chunk_timeout)
    except TimeoutError:
        raise body_timeout(chunk_timeout or 0.0, received) from None
    return Body(b"".join(chunks), codec)


async def read_json_body(request: Request, limit: int, chunk_timeout: float | None = None) -> bytes:
    """The bytes of a JSON-only body (admin routes)."""
    return (await read_body(request, limit, ("json",), chunk_timeout)).data


def wants_msgpack(request: Request) -> bool:
    """Answer in msgpack only when the client asks for it; JSON stays the default."""
    return MSGPACK_MEDIA_TYPE in request.headers.get("accept", "")
