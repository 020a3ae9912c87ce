"""Model listing (open) and admin routes (bearer token): activate, roll back, canary, shadow.

Every change is verified in this worker first (the bundle loads, hashes and shapes check out,
warm-up runs) and only then written to the routing state in Redis, which every worker follows.
A refused bundle never reaches Redis, so no worker is ever told to serve it.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Callable
from typing import TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contracts.item_table import ITEMS_MANIFEST, ItemTableError, items_root
from contracts.routing import RoutingState
from contracts.store import StoreError, prune, versions
from contracts.versions import POLICY_NAME
from service.bundle import BundleError
from service.decode import decode_json
from service.http_body import read_json_body
from service.item_catalog import ITEMS_ROUTE
from service.openapi import body_of, responses_of
from service.problems import ProblemError, invalid_field, unknown_policy
from service.responses import json_response
from service.runtime import Runtime, served_policies
from service.schema import (
    ActivateRequest,
    CanaryRequest,
    ItemTableStatus,
    ModelsResponse,
    PolicyStatus,
    ShadowRequest,
)

T = TypeVar("T")
# The admin routes' body and answer types, for the OpenAPI components.
ADMIN_SCHEMA_TYPES = [ActivateRequest, CanaryRequest, ShadowRequest, PolicyStatus, ModelsResponse, ItemTableStatus]
_bearer = HTTPBearer(auto_error=False, description="CASCADE_ADMIN_TOKEN")
_BEARER = Depends(_bearer)


def admin_router(runtime: Callable[[], Runtime]) -> APIRouter:
    """Routes under /v1/models and /v1/admin, bound to the app's runtime getter."""
    router = APIRouter()

    def require_admin(credentials: HTTPAuthorizationCredentials | None = _BEARER) -> None:
        token = runtime().settings.admin_token
        if credentials is None:
            raise ProblemError(
                401, "unauthorized", "Unauthorized", "send Authorization: Bearer <token>", "authorization"
            )
        if token is None:
            raise ProblemError(403, "forbidden", "Forbidden", "admin API disabled: set CASCADE_ADMIN_TOKEN")
        if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):  # constant time
            raise ProblemError(403, "forbidden", "Forbidden", "wrong admin token", "authorization")

    async def status(rt: Runtime, policy: str, state: RoutingState | None = None) -> PolicyStatus:
        state = state or await rt.routing.get(policy)
        serving = rt.registry.get(policy)
        return PolicyStatus(
            policy=policy,
            revision=state.revision,
            active=state.active,
            previous=state.previous,
            canary=state.canary,
            canary_fraction=state.canary_fraction,
            shadow=state.shadow,
            worker_pid=os.getpid(),
            worker_serving=serving.versions() if serving else None,
            on_disk=versions(rt.settings.store, policy),
            error=rt.registry.error(policy),
        )

    async def verified(rt: Runtime, policy: str, version: str, field: str) -> None:
        """404 if the version is not on disk, 422 (with the reason) if it cannot be served."""
        if version not in versions(rt.settings.store, policy):
            raise ProblemError(404, "unknown-version", "Unknown version", f"no {policy}/{version} in the store", field)
        try:
            await asyncio.to_thread(rt.registry.load, policy, version)
        except (StoreError, BundleError) as exc:
            rt.metrics.swap_failures.labels(policy).inc()
            raise invalid_field(field, f"bundle {policy}/{version} refused: {exc}") from exc

    async def changed(rt: Runtime, policy: str, state: RoutingState) -> Response:
        prune(rt.settings.store, policy, rt.settings.retain_versions, state.versions_in_use())
        return json_response(await status(rt, policy, state))

    def known(rt: Runtime, policy: str) -> None:
        if not POLICY_NAME.fullmatch(policy) or not (rt.settings.store / policy).is_dir():
            raise unknown_policy(policy)

    async def change_request(policy: str, request: Request, kind: type[T]) -> tuple[Runtime, T]:
        """The runtime and the decoded body of an admin change naming a version (verified, if any)."""
        rt = runtime()
        known(rt, policy)
        body = decode_json(await read_json_body(request, rt.settings.max_body_bytes), kind)
        version: str | None = getattr(body, "version", None)
        if version is not None:
            await verified(rt, policy, version, "version")
        return rt, body

    @router.get(
        "/v1/models", summary="Policies, their routing and versions", responses=responses_of(ModelsResponse, 200)
    )
    async def models() -> Response:
        rt = runtime()
        names = sorted({rt.settings.policy, *served_policies(rt.settings)})
        return json_response(ModelsResponse(policies=[await status(rt, name) for name in names]))

    admin = [Depends(require_admin)]
    problems = (401, 403, 404, 422)

    @router.post(
        "/v1/admin/policies/{policy}/activate",
        summary="Serve a version (verified first); the current one becomes the rollback target",
        dependencies=admin,
        openapi_extra=body_of(ActivateRequest),
        responses=responses_of(PolicyStatus, 200, 400, *problems),
    )
    async def activate(policy: str, request: Request) -> Response:
        rt, body = await change_request(policy, request, ActivateRequest)
        return await changed(rt, policy, await rt.routing.activate(policy, body.version))

    @router.post(
        "/v1/admin/policies/{policy}/rollback",
        summary="Serve the previous version again",
        dependencies=admin,
        responses=responses_of(PolicyStatus, 200, *problems),
    )
    async def rollback(policy: str) -> Response:
        rt = runtime()
        known(rt, policy)
        current = await rt.routing.get(policy)
        if current.previous is None:
            raise ProblemError(409, "no-previous-version", "Nothing to roll back to", f"{policy} has no previous")
        await verified(rt, policy, current.previous, "previous")
        state = await rt.routing.rollback(policy)
        return await changed(rt, policy, state or current)

    @router.post(
        "/v1/admin/policies/{policy}/canary",
        summary="Route a stable fraction of users to a version (null version clears)",
        dependencies=admin,
        openapi_extra=body_of(CanaryRequest),
        responses=responses_of(PolicyStatus, 200, 400, *problems),
    )
    async def canary(policy: str, request: Request) -> Response:
        rt, body = await change_request(policy, request, CanaryRequest)
        return await changed(rt, policy, await rt.routing.set_canary(policy, body.version, body.fraction))

    @router.post(
        "/v1/admin/policies/{policy}/shadow",
        summary="Score and log every request with a version too, never serving it (null clears)",
        dependencies=admin,
        openapi_extra=body_of(ShadowRequest),
        responses=responses_of(PolicyStatus, 200, 400, *problems),
    )
    async def shadow(policy: str, request: Request) -> Response:
        rt, body = await change_request(policy, request, ShadowRequest)
        return await changed(rt, policy, await rt.routing.set_shadow(policy, body.version))

    @router.post(
        "/v1/admin/items/activate",
        summary="Serve an item table version from the store (verified first) in every worker",
        dependencies=admin,
        openapi_extra=body_of(ActivateRequest),
        responses=responses_of(ItemTableStatus, 200, 400, *problems),
    )
    async def activate_items(request: Request) -> Response:
        rt = runtime()
        body = decode_json(await read_json_body(request, rt.settings.max_body_bytes), ActivateRequest)
        if not (items_root(rt.settings.store) / body.version / ITEMS_MANIFEST).is_file():
            raise ProblemError(404, "unknown-version", "Unknown version", f"no item table {body.version}", "version")
        try:
            await asyncio.to_thread(rt.items.load, body.version)
        except ItemTableError as exc:
            raise invalid_field("version", f"item table {body.version} refused: {exc}") from exc
        state = await rt.routing.activate(ITEMS_ROUTE, body.version)
        return json_response(ItemTableStatus(active=state.active, previous=state.previous, revision=state.revision))

    return router
