"""The first answer of a freshly started app: equal settings → equal exploration draws, comparable answers."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings


def first_answer(settings: Settings, path: str, content: bytes, content_type: str, accept: str = "") -> httpx.Response:
    """POST one body to a new app built from `settings` (its noise generator starts from the same seed)."""
    headers = {"content-type": content_type}
    if accept:
        headers["accept"] = accept
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        return client.post(path, content=content, headers=headers)


def decision_of(answer: dict[str, Any]) -> dict[str, Any]:
    """The parts of a rank or fusion answer that depend only on the inputs and the draws, not on ids or time."""
    return {key: value for key, value in answer.items() if key not in {"request_id", "timings"}}
