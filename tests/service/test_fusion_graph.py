"""/v1/fusion is one call of the bundle's fusion graph: the cascade's weights, log_prob and novelty for the
same state and noise, replayable from the record; a bundle without the graph is refused at load."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis
from fastapi.testclient import TestClient

from contracts import decision_record
from contracts.manifest import (
    CASCADE_GRAPH,
    CASCADE_OUTPUTS,
    FUSION_GRAPH,
    FUSION_OUTPUTS,
    MANIFEST_FILE,
    Manifest,
    sha256_of,
)
from contracts.store import active_version, bundle_path, read_manifest
from service.bundle import BundleError, load_bundle
from service.settings import Settings
from tests.redis_streams import wait_for_stream

_CPU = ["CPUExecutionProvider"]


def _folder(store: Path) -> Path:
    return bundle_path(store, "demo", active_version(store, "demo"))


def test_fusion_answers_what_the_cascade_graph_gives_for_the_same_noise_and_its_record_replays(
    client: TestClient,
    settings: Settings,
    store: Path,
    redis_client: redis.Redis,
    make_request: Callable[..., dict[str, Any]],
) -> None:
    bodies = [make_request(n_candidates=20) for _ in range(30)]
    answers = [client.post("/v1/fusion", json={"user": b["user"], "context": b["context"]}).json() for b in bodies]
    entries = wait_for_stream(redis_client, settings.decision_stream, len(bodies))
    records = [decision_record.decode(fields[decision_record.STREAM_FIELD]) for _, fields in entries]
    folder = _folder(store)
    manifest = read_manifest(folder)
    cascade = ort.InferenceSession(str(folder / manifest.graphs[CASCADE_GRAPH].file), providers=_CPU)
    fusion = ort.InferenceSession(str(folder / manifest.graphs[FUSION_GRAPH].file), providers=_CPU)
    assert any(r.explored for r in records) and not all(r.explored for r in records)  # both kinds of draw

    for body, answer, record in zip(bodies, answers, records, strict=True):
        assert record.request_id == answer["request_id"]
        user = np.asarray([record.user_features], dtype=np.float32)
        context = np.asarray([record.context], dtype=np.float32)
        noise = np.asarray([record.fusion.noise], dtype=np.float32)
        # Replay from the record alone, through the fusion graph: exactly what was served and logged.
        replay = dict(
            zip(
                FUSION_OUTPUTS, fusion.run(None, {"user": user, "context": context, "fusion_noise": noise}), strict=True
            )
        )
        assert replay["fusion_action"][0].tolist() == record.fusion.action.tolist() == list(answer["weights"].values())
        assert replay["fusion_mean"][0].tolist() == record.fusion.mean.tolist()
        assert float(replay["log_prob"][0]) == record.log_prob == answer["log_prob"]
        assert float(replay["novelty"][0]) == record.novelty == answer["novelty"]
        # The cascade graph, with this request's own candidates, gives the same fusion for the same noise.
        whole = dict(
            zip(
                CASCADE_OUTPUTS,
                cascade.run(
                    None,
                    {
                        "user": user,
                        "context": context,
                        "item_features": np.asarray(body["candidates"]["features"], dtype=np.float32),
                        "mtl_predictions": np.asarray(body["candidates"]["predictions"], dtype=np.float32),
                        "fusion_noise": noise,
                        "stage_sizes": np.asarray(manifest.stage_sizes, dtype=np.int64),
                        "k": np.asarray([10], dtype=np.int64),
                    },
                ),
                strict=True,
            )
        )
        weights = np.asarray(list(answer["weights"].values()), dtype=np.float32)
        np.testing.assert_allclose(weights, whole["fusion_action"][0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(answer["log_prob"], whole["log_prob"][0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(answer["novelty"], whole["novelty"][0], rtol=0, atol=1e-6)


@pytest.fixture
def bundle_copy(store: Path, tmp_path: Path) -> Path:
    private = tmp_path / "store"
    shutil.copytree(store, private)
    return _folder(private)


def _as_format_1(bundle: Path) -> None:
    """What a bundle exported before the fusion graph looked like: format 1, the cascade graph only."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    fusion_file = manifest["graphs"].pop(FUSION_GRAPH)["file"]
    del manifest["files"][fusion_file], manifest["fusion_parity"]
    manifest["format_version"] = 1
    (bundle / fusion_file).unlink()
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_bundle_of_the_old_format_is_refused_with_a_message_to_re_export_it(bundle_copy: Path) -> None:
    _as_format_1(bundle_copy)

    with pytest.raises(BundleError, match=r"bundle format 1 is not served here.*fusion\.onnx.*re-export"):
        load_bundle(bundle_copy)


def test_a_manifest_without_the_fusion_graph_is_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / MANIFEST_FILE).read_text())
    del manifest["graphs"][FUSION_GRAPH]
    (bundle_copy / MANIFEST_FILE).write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match="no 'fusion' graph; re-export"):
        load_bundle(bundle_copy)


def test_a_fusion_graph_with_another_signature_is_refused(bundle_copy: Path) -> None:
    manifest = Manifest.model_validate_json((bundle_copy / MANIFEST_FILE).read_text())
    fusion_file = bundle_copy / manifest.graphs[FUSION_GRAPH].file
    shutil.copyfile(bundle_copy / manifest.graphs[CASCADE_GRAPH].file, fusion_file)  # a real graph, the wrong one
    files = {**manifest.files, fusion_file.name: sha256_of(fusion_file)}
    (bundle_copy / MANIFEST_FILE).write_text(manifest.model_copy(update={"files": files}).model_dump_json())

    with pytest.raises(BundleError, match="graph inputs"):
        load_bundle(bundle_copy)


def test_a_fusion_graph_whose_bytes_changed_fails_its_sha256(bundle_copy: Path) -> None:
    manifest = read_manifest(bundle_copy)
    with (bundle_copy / manifest.graphs[FUSION_GRAPH].file).open("ab") as graph:
        graph.write(b"\0")

    with pytest.raises(BundleError, match=r"fusion\.onnx: sha256"):
        load_bundle(bundle_copy)
