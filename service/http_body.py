"""Reading a request body within the configured size limit, before anything parses it.

One implementation of the limits for both ways a body arrives: a Starlette Request (the FastAPI routes)
and the raw ASGI receive channel (service/hot_path.py, the rank and fusion routes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from service.body import CODECS, JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE, Body, Codec
from service.problems import body_timeout, body_too_large, unsupported_media_type


def media_type_of(request: Request) -> str:
    return normalised_media_type(request.headers.get("content-type"))


def normalised_media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header value (JSON when absent), without parameters, lower case."""
    return (content_type or JSON_MEDIA_TYPE).split(";", 1)[0].strip().lower()


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
    headers = request.headers
    return await read_chunks(
        headers.get("content-type"), headers.get("content-length"), request.stream(), limit, codecs, chunk_timeout
    )


async def read_chunks(
    content_type: str | None,
    content_length: str | None,
    chunks: AsyncIterator[bytes],
    limit: int,
    codecs: tuple[Codec, ...] = ("json", "msgpack"),
    chunk_timeout: float | None = None,
) -> Body:
    """read_body on the header values and the body's chunks themselves (as they arrive)."""
    media_type = normalised_media_type(content_type)
    codec = CODECS.get(media_type)
    if codec is None or codec not in codecs:
        raise unsupported_media_type(media_type)
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise body_too_large(limit)
    parts: list[bytes] = []
    received = 0
    loop = asyncio.get_running_loop()
    try:
        # One deadline, pushed back after each chunk: no task per chunk (a 1 MB body arrives in ~20).
        async with asyncio.timeout(chunk_timeout) as deadline:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise body_too_large(limit)
                parts.append(chunk)
                if chunk_timeout is not None:
                    deadline.reschedule(loop.time() + chunk_timeout)
    except TimeoutError:
        raise body_timeout(chunk_timeout or 0.0, received) from None
    return Body(b"".join(parts), codec)


async def asgi_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """The body's chunks off the ASGI receive channel, as Starlette's Request.stream() yields them:
    ClientDisconnect when the client hangs up before the last one."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()


async def read_json_body(request: Request, limit: int, chunk_timeout: float | None = None) -> bytes:
    """The bytes of a JSON-only body (admin routes)."""
    return (await read_body(request, limit, ("json",), chunk_timeout)).data


def wants_msgpack(request: Request) -> bool:
    """Answer in msgpack only when the client asks for it; JSON stays the default."""
    return accepts_msgpack(request.headers.get("accept"))


def accepts_msgpack(accept: str | None) -> bool:
    """Whether an Accept header value asks for msgpack."""
    return MSGPACK_MEDIA_TYPE in (accept or "")
