"""The Open Inference Protocol routes KServe probes: live, ready, model metadata and model ready."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from contracts.manifest import CASCADE_GRAPH
from contracts.store import active_version, read_manifest
from service.app import create_app
from service.settings import Settings


def test_live_and_ready_answer_as_the_protocol_says_with_a_bundle_loaded(client: TestClient) -> None:
    live = client.get("/v2/health/live")
    ready = client.get("/v2/health/ready")

    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_model_metadata_lists_the_served_version_and_the_cascade_graph_tensors(client: TestClient, store: Path) -> None:
    version = active_version(store, "demo")
    graph = read_manifest(store / "demo" / version).graphs[CASCADE_GRAPH]

    answer = client.get("/v2/models/demo")

    assert answer.status_code == 200
    metadata = answer.json()
    assert metadata["name"] == "demo"
    assert metadata["versions"] == [version]
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [tensor["name"] for tensor in metadata["inputs"]] == [spec.name for spec in graph.inputs]
    assert [tensor["name"] for tensor in metadata["outputs"]] == [spec.name for spec in graph.outputs]
    assert all(tensor["datatype"].isupper() for tensor in metadata["inputs"] + metadata["outputs"])
    # A dynamic axis (the candidate count) is -1 in the protocol, never a string.
    assert all(isinstance(axis, int) for tensor in metadata["inputs"] for axis in tensor["shape"])
    assert client.get("/v2/models/demo/ready").json() == {"ready": True}


def test_an_unknown_model_is_a_404_problem_naming_the_path_field(client: TestClient) -> None:
    answer = client.get("/v2/models/no-such-policy")

    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == "name"


def test_without_a_bundle_live_is_200_and_ready_is_503(settings: Settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"store": tmp_path / "empty-store"})
    with TestClient(create_app(empty)) as client:
        live = client.get("/v2/health/live")
        ready = client.get("/v2/health/ready")
        metadata = client.get("/v2/models/demo")

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    assert metadata.status_code == 503
