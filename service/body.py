"""A request body as the core receives it: its bytes and the codec its media type names.

Transport-free, so decoding (service/decode.py) needs no web framework; service/http_body.py reads it off
the HTTP request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

JSON_MEDIA_TYPE = "application/json"
MSGPACK_MEDIA_TYPE = "application/msgpack"
Codec = Literal["json", "msgpack"]
CODECS: dict[str, Codec] = {
    JSON_MEDIA_TYPE: "json",
    MSGPACK_MEDIA_TYPE: "msgpack",
    "application/x-msgpack": "msgpack",  # the older, unregistered name many clients still send
}


@dataclass(frozen=True)
class Body:
    """The bytes of one body and how to decode them."""

    data: bytes
    codec: Codec
