"""Model listing (open) and admin routes (bearer token): activate, roll back, canary, shadow.

Every change is verified in this worker first (the bundle loads, hashes and shapes check out,
warm-up runs) and only then written to the routing state in Redis and its durable copy in the
store, which every worker follows. A refused bundle never reaches Redis, so no worker is ever told
to serve it. With `wait_seconds`, the answer comes once every live worker says (in its heartbeat)
that it serves the change, or at the deadline, and names what each worker serves.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import msgspec
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
from service.openapi import body_of, described, responses_of
from service.problems import ProblemError, invalid_field, unknown_policy
from service.responses import json_response
from service.runtime import Runtime, request_limits, served_policies
from service.schema import (
    ActivateRequest,
    CanaryRequest,
    ItemTableStatus,
    ModelsResponse,
    PolicyDetail,
    PolicyStatus,
    RequestShape,
    RollbackRequest,
    ShadowRequest,
)

T = TypeVar("T")
# The admin routes' body and answer types, for the OpenAPI components.
ADMIN_SCHEMA_TYPES = [
    ActivateRequest,
    CanaryRequest,
    ShadowRequest,
    RollbackRequest,
    PolicyStatus,
    PolicyDetail,
    ModelsResponse,
    ItemTableStatus,
]
_POLL_SECONDS = 0.05  # how often a waiting activation re-reads the workers' heartbeats
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

    async def changed(rt: Runtime, policy: str, state: RoutingState, wait_seconds: float = 0.0) -> Response:
        await asyncio.to_thread(prune, rt.settings.store, policy, rt.settings.retain_versions, state.versions_in_use())
        if wait_seconds <= 0:
            return json_response(await status(rt, policy, state))
        if rt.watcher is not None:
            await rt.watcher.refresh()  # this worker applies it now, the others on the change message
        converged, workers = await wait_for_workers(rt, policy, state, wait_seconds)
        answer = await status(rt, policy, state)
        return json_response(msgspec.structs.replace(answer, converged=converged, workers=workers))

    async def wait_for_workers(
        rt: Runtime, policy: str, state: RoutingState, wait_seconds: float
    ) -> tuple[bool, dict[str, dict[str, str | float | None]]]:
        """Poll the live workers' heartbeats until each serves `state` or the deadline passes."""
        want = state.serves()
        # A worker that wrote no heartbeat for three polls (and 2 s) is gone: it does not hold the answer back.
        alive_seconds = max(3 * rt.settings.routing_poll_seconds, 2.0)
        deadline = time.monotonic() + wait_seconds
        while True:
            beats = cast(dict[bytes, bytes], await rt.redis.hgetall(rt.routing.workers))
            workers: dict[str, dict[str, str | float | None]] = {}
            stale = []
            for worker, raw in beats.items():
                beat: dict[str, Any] = msgspec.json.decode(raw)
                if beat["time"] < time.time() - alive_seconds:
                    stale.append(worker)
                    continue
                workers[worker.decode()] = beat["serving"].get(policy) or {}
            if stale:
                await rt.redis.hdel(rt.routing.workers, *stale)
            served = {
                name: (w.get("active"), w.get("canary"), w.get("canary_fraction") or 0.0, w.get("shadow"))
                for name, w in workers.items()
            }
            own = rt.watcher.worker_id if rt.watcher is not None else None
            converged = own in workers and all(value == want for value in served.values())
            if converged or time.monotonic() >= deadline:
                return converged, workers
            await asyncio.sleep(_POLL_SECONDS)

    def known(rt: Runtime, policy: str) -> None:
        if not POLICY_NAME.fullmatch(policy) or not (rt.settings.store / policy).is_dir():
            raise unknown_policy(policy)

    async def change_request(policy: str, request: Request, kind: type[T]) -> tuple[Runtime, T]:
        """The runtime and the decoded body of an admin change naming a version (verified, if any)."""
        rt = runtime()
        known(rt, policy)
        body = decode_json(
            await read_json_body(request, rt.settings.max_body_bytes, rt.settings.body_read_timeout_seconds), kind
        )
        version: str | None = getattr(body, "version", None)
        if version is not None:
            await verified(rt, policy, version, "version")
        return rt, body

    @router.get(
        "/v1/models",
        summary="Policies, their routing and versions",
        responses=responses_of(ModelsResponse, 200, 503),
    )
    async def models() -> Response:
        rt = runtime()
        names = sorted({rt.settings.policy, *served_policies(rt.settings)})
        return json_response(ModelsResponse(policies=[await status(rt, name) for name in names]))

    @router.get(
        "/v1/models/{policy}",
        summary="One policy: routing, and the body shape its active bundle accepts (vector widths, limits)",
        responses=responses_of(PolicyDetail, 200, 404, 503),
    )
    async def model(policy: str) -> Response:
        rt = runtime()
        known(rt, policy)
        serving = rt.registry.get(policy)
        shape = None
        if serving is not None:
            manifest = serving.active.manifest
            schema, limits = manifest.feature_schema, request_limits(rt.settings)
            shape = RequestShape(
                user_dim=schema.user_dim,
                context_dim=schema.context_dim,
                item_dim=schema.item_dim,
                objectives=schema.objectives,
                user_columns=schema.user_columns,
                context_columns=schema.context_columns,
                item_columns=schema.item_columns,
                stage_sizes=manifest.stage_sizes,
                fusion_weights=manifest.fusion.names,
                per_item_fusion=serving.active.fusion.item_fusion is not None,
                max_candidates=limits.max_candidates,
                max_k=limits.max_k,
                max_reward_keys=limits.max_reward_keys,
                max_name_length=limits.max_name_length,
            )
        return json_response(PolicyDetail(status=await status(rt, policy), request=shape))

    admin = [Depends(require_admin)]
    problems = (401, 403, 404, 408, 413, 415, 422, 503)

    @router.post(
        "/v1/admin/policies/{policy}/activate",
        summary="Serve a version (verified first); the current one becomes the rollback target",
        dependencies=admin,
        openapi_extra=body_of(ActivateRequest),
        responses=responses_of(PolicyStatus, 200, 400, *problems),
    )
    async def activate(policy: str, request: Request) -> Response:
        rt, body = await change_request(policy, request, ActivateRequest)
        return await changed(rt, policy, await rt.routing.activate(policy, body.version), body.wait_seconds)

    @router.post(
        "/v1/admin/policies/{policy}/rollback",
        summary="Serve the previous version again",
        dependencies=admin,
        openapi_extra={"requestBody": {**body_of(RollbackRequest)["requestBody"], "required": False}},
        responses=described(
            responses_of(PolicyStatus, 200, 400, 409, *problems),
            s409="Nothing to roll back to: the policy has no previous version (`field`: previous)",
        ),
    )
    async def rollback(policy: str, request: Request) -> Response:
        rt = runtime()
        known(rt, policy)
        raw = await read_json_body(request, rt.settings.max_body_bytes, rt.settings.body_read_timeout_seconds)
        body = decode_json(raw, RollbackRequest) if raw.strip() else RollbackRequest()
        current = await rt.routing.get(policy)
        if current.previous is None:
            raise ProblemError(
                409, "no-previous-version", "Nothing to roll back to", f"{policy} has no previous version", "previous"
            )
        await verified(rt, policy, current.previous, "previous")
        state = await rt.routing.rollback(policy)
        return await changed(rt, policy, state or current, body.wait_seconds)

    @router.post(
        "/v1/admin/policies/{policy}/canary",
        summary="Route a stable fraction of users to a version (null version clears)",
        dependencies=admin,
        openapi_extra=body_of(CanaryRequest),
        responses=responses_of(PolicyStatus, 200, 400, *problems),
    )
    async def canary(policy: str, request: Request) -> Response:
        rt, body = await change_request(policy, request, CanaryRequest)
        state = await rt.routing.set_canary(policy, body.version, body.fraction)
        return await changed(rt, policy, state, body.wait_seconds)

    @router.post(
        "/v1/admin/policies/{policy}/shadow",
        summary="Score and log every request with a version too, never serving it (null clears)",
        dependencies=admin,
        openapi_extra=body_of(ShadowRequest),
        responses=responses_of(PolicyStatus, 200, 400, *problems),
    )
    async def shadow(policy: str, request: Request) -> Response:
        rt, body = await change_request(policy, request, ShadowRequest)
        return await changed(rt, policy, await rt.routing.set_shadow(policy, body.version), body.wait_seconds)

    @router.post(
        "/v1/admin/items/activate",
        summary="Serve an item table version from the store (verified first) in every worker",
        dependencies=admin,
        openapi_extra=body_of(ActivateRequest),
        responses=responses_of(ItemTableStatus, 200, 400, *problems),
    )
    async def activate_items(request: Request) -> Response:
        rt = runtime()
        body = decode_json(
            await read_json_body(request, rt.settings.max_body_bytes, rt.settings.body_read_timeout_seconds),
            ActivateRequest,
        )
        if not (items_root(rt.settings.store) / body.version / ITEMS_MANIFEST).is_file():
            raise ProblemError(404, "unknown-version", "Unknown version", f"no item table {body.version}", "version")
        try:
            await asyncio.to_thread(rt.items.load, body.version)
        except ItemTableError as exc:
            raise invalid_field("version", f"item table {body.version} refused: {exc}") from exc
        state = await rt.routing.activate(ITEMS_ROUTE, body.version)
        if body.wait_seconds > 0 and rt.watcher is not None:
            await rt.watcher.refresh()  # this worker swaps before answering; the others on the change message
        return json_response(ItemTableStatus(active=state.active, previous=state.previous, revision=state.revision))

    return router
