"""The Open Inference Protocol's health and metadata routes, so KServe can run this image as a predictor.

KServe (and Triton, MLServer, Seldon) probe a custom container with the protocol's REST paths
(https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol): `/v2/health/live`,
`/v2/health/ready`, `/v2/models/{name}` and `/v2/models/{name}/ready`. A model here is a policy; its
metadata lists the versions this worker serves and the cascade graph's tensors from the manifest.
Inference stays on `/v1/rank`: its body (ids, inline rows or msgpack tensors) has no OIP equivalent.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from fastapi import APIRouter
from fastapi.responses import Response

from contracts.manifest import CASCADE_GRAPH, TensorSpec
from contracts.versions import POLICY_NAME
from service.openapi import responses_of
from service.problems import ProblemError, not_ready
from service.responses import json_response
from service.runtime import Runtime, served_policies

# The protocol's tensor datatypes (its "Tensor Data Types" table) for the numpy dtypes a manifest names.
_DATATYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
    "string": "BYTES",
}
PLATFORM = "onnxruntime_onnx"  # the platform name Triton and KServe give ONNX Runtime models


class Live(msgspec.Struct):
    """`GET /v2/health/live`: the process answers."""

    live: bool


class Ready(msgspec.Struct):
    """`GET /v2/health/ready` and `/v2/models/{name}/ready`: a bundle is loaded and warm."""

    ready: bool


class MetadataTensor(msgspec.Struct):
    """One input or output tensor of the model: name, protocol datatype, shape (-1 for a dynamic axis)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(msgspec.Struct):
    """`GET /v2/models/{name}`: the protocol's model metadata response."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


OIP_SCHEMA_TYPES = [Live, Ready, MetadataTensor, ModelMetadata]


def _tensor(spec: TensorSpec) -> MetadataTensor:
    shape = [axis if isinstance(axis, int) else -1 for axis in spec.shape]
    return MetadataTensor(name=spec.name, datatype=_DATATYPES.get(spec.dtype, spec.dtype.upper()), shape=shape)


def inference_protocol_router(runtime: Callable[[], Runtime]) -> APIRouter:
    """The `/v2` health and metadata routes, bound to the app's runtime getter."""
    router = APIRouter(tags=["open-inference-protocol"])

    def ready_policy(name: str) -> Ready:
        rt = runtime()
        if not POLICY_NAME.fullmatch(name) or name not in served_policies(rt.settings):
            detail = f"policy '{name}' is not served here"
            raise ProblemError(404, "unknown-policy", "Unknown policy", detail, "name")
        if rt.registry.get(name) is None:
            raise not_ready(f"policy '{name}' has no loaded bundle: {rt.registry.error(name)}")
        return Ready(ready=True)

    @router.get(
        "/v2/health/live", summary="Open Inference Protocol: the process is alive", responses=responses_of(Live, 200)
    )
    async def live() -> Response:
        return json_response(Live(live=True))

    @router.get(
        "/v2/health/ready",
        summary="Open Inference Protocol: the default policy has a loaded, warm bundle",
        responses=responses_of(Ready, 200, 503),
    )
    async def ready() -> Response:
        return json_response(ready_policy(runtime().settings.policy))

    @router.get(
        "/v2/models/{name}/ready",
        summary="Open Inference Protocol: this policy has a loaded, warm bundle",
        responses=responses_of(Ready, 200, 404, 503),
    )
    async def model_ready(name: str) -> Response:
        return json_response(ready_policy(name))

    @router.get(
        "/v2/models/{name}",
        summary="Open Inference Protocol: model metadata (versions served, cascade graph tensors)",
        responses=responses_of(ModelMetadata, 200, 404, 503),
    )
    async def metadata(name: str) -> Response:
        ready_policy(name)
        serving = runtime().registry.get(name)
        if serving is None:  # unloaded between the two reads: answer as not ready
            raise not_ready(f"policy '{name}' has no loaded bundle")
        arms = [serving.active, serving.canary, serving.shadow]
        versions = list(dict.fromkeys(bundle.version for bundle in arms if bundle is not None))
        graph = serving.active.manifest.graphs[CASCADE_GRAPH]
        answer = ModelMetadata(
            name=name,
            versions=versions,
            platform=PLATFORM,
            inputs=[_tensor(spec) for spec in graph.inputs],
            outputs=[_tensor(spec) for spec in graph.outputs],
        )
        return json_response(answer)

    return router
