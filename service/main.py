"""The uvicorn entry point: an app built from the environment (`uvicorn --factory service.main:build`)."""

from __future__ import annotations

from fastapi import FastAPI

from service.app import create_app
from service.settings import Settings


def build() -> FastAPI:
    """Read settings from the environment once and build the app."""
    return create_app(Settings())
