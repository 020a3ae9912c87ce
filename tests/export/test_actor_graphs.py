"""The ResAct and EnhancedRL actor graphs in a bundle: parity written to the manifest, dynamic draws and candidates, a
ResAct decision replayed from its logged draws, rank_by_action ranking exactly as the cascade does with the
same action, and a bundle the service's loader still accepts (and one missing rank_by_action refused)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from contracts.manifest import (
    CASCADE_GRAPH,
    CASCADE_OUTPUTS,
    ITEM_FUSION_GRAPH,
    ITEM_FUSION_OUTPUTS,
    MANIFEST_FILE,
    RANK_BY_ACTION_GRAPH,
    RANK_BY_ACTION_OUTPUTS,
    RESACT_GRAPH,
    RESACT_OUTPUTS,
    Manifest,
    cascade_graph_spec,
    sha256_of,
)
from export.actor_graphs import (
    ITEM_FUSION_FILE,
    RANK_BY_ACTION_FILE,
    RESACT_FILE,
    item_fusion_inputs,
    rank_by_action_inputs,
    resact_inputs,
)
from export.exporter import CASCADE_FILE
from models.algorithms.enhanced_rl import EnhancedRLConfig
from models.algorithms.resact import ResActConfig
from models.env.offline_data import OfflineConfig
from pipelines.actor_bundle import ActorBundleConfig, build_actor_bundle
from service.bundle import BundleError, load_bundle

TINY = ActorBundleConfig(
    offline=OfflineConfig(sessions=8, log_steps=5, n_candidates=20),
    resact=ResActConfig(steps=10, batch=16, hidden=32),
    enhanced=EnhancedRLConfig(steps=6, sessions=4, batch=8, warmup=3, hidden=32),
    head_steps=5,
    stage_sizes=(15, 12, 10),
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Manifest]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small networks on a shared 2-core machine
    out = tmp_path_factory.mktemp("actors") / "bundle"
    manifest = build_actor_bundle(out, seed=0, config=TINY)
    yield out, manifest
    torch.set_num_threads(threads)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_manifest_records_each_actor_graph_with_a_passed_parity_and_its_hash(bundle: tuple[Path, Manifest]) -> None:
    folder, manifest = bundle
    on_disk = Manifest.model_validate_json((folder / "manifest.json").read_text())
    assert on_disk == manifest
    assert set(manifest.actors) == {RESACT_GRAPH, RANK_BY_ACTION_GRAPH, ITEM_FUSION_GRAPH}
    for actor in manifest.actors.values():
        assert actor.parity.passed and actor.parity.max_abs_error <= actor.parity.tolerance <= 1e-4
    assert manifest.actors[RESACT_GRAPH].parity.candidate_counts == [1, 2, 10, 15]  # n_draws tried
    # rank_by_action is checked over the cascade's own cases: N below, at and above every stage size (15, 12, 10).
    assert {1, 9, 10, 11, 12, 13, 14, 15, 16} <= set(manifest.actors[RANK_BY_ACTION_GRAPH].parity.candidate_counts)
    for name in (RESACT_FILE, RANK_BY_ACTION_FILE, ITEM_FUSION_FILE):
        assert manifest.files[name] == sha256_of(folder / name)
    # The cascade contract is unchanged: same graph spec as any cascade bundle.
    assert manifest.graphs[CASCADE_GRAPH] == cascade_graph_spec(manifest.feature_schema)


def test_the_service_loader_still_accepts_the_bundle(bundle: tuple[Path, Manifest]) -> None:
    loaded = load_bundle(bundle[0])
    assert loaded.manifest.actors.keys() == bundle[1].actors.keys()


def test_resact_decision_replays_from_its_logged_draws(bundle: tuple[Path, Manifest]) -> None:
    folder, manifest = bundle
    actor = manifest.actors[RESACT_GRAPH]
    assert actor.latent_dim is not None and actor.n_draws is not None
    served = _session(folder / RESACT_FILE)
    inputs = resact_inputs(manifest.feature_schema, actor.latent_dim, actor.n_draws, np.random.default_rng(7))
    action, candidates, q, choice = served.run(list(RESACT_OUTPUTS), inputs)
    # The decision record keeps user, context and the draws; a fresh session replays them.
    record = {name: value.tolist() for name, value in inputs.items()}
    replay = _session(folder / RESACT_FILE).run(
        list(RESACT_OUTPUTS), {name: np.asarray(value, dtype=np.float32) for name, value in record.items()}
    )

    assert np.array_equal(replay[0], action)  # bit for bit
    assert choice.shape == (1,) and choice[0] == int(np.argmax(q[0]))
    assert np.array_equal(action[0], candidates[0, choice[0]])
    other = dict(inputs, latents=np.random.default_rng(8).standard_normal(inputs["latents"].shape).astype(np.float32))
    assert not np.array_equal(served.run(["resact_action"], other)[0], action)


@pytest.mark.parametrize(("n_candidates", "k"), [(1, 1), (12, 5), (40, 10), (40, 25)])
def test_rank_by_action_ranks_exactly_as_the_cascade_given_the_same_action(
    bundle: tuple[Path, Manifest], n_candidates: int, k: int
) -> None:
    folder, manifest = bundle
    inputs = rank_by_action_inputs(manifest, n_candidates, k, np.random.default_rng(n_candidates + k))
    cascade_feeds = {name: value for name, value in inputs.items() if name != "fusion_action"}
    cascade_feeds["fusion_noise"] = np.zeros_like(inputs["fusion_action"])  # the Gaussian actor's mean
    cascade = dict(zip(CASCADE_OUTPUTS, _session(folder / CASCADE_FILE).run(None, cascade_feeds), strict=True))
    inputs["fusion_action"] = cascade["fusion_action"]
    ranked = dict(zip(RANK_BY_ACTION_OUTPUTS, _session(folder / RANK_BY_ACTION_FILE).run(None, inputs), strict=True))

    assert ranked["top_indices"].shape == (min(k, n_candidates),)
    for name in ("top_indices", "stage_survivors"):
        assert np.array_equal(ranked[name], cascade[name]), name
    for name in ("top_scores", "stage_observations", "stage_actions", "novelty"):
        np.testing.assert_allclose(ranked[name], cascade[name], rtol=1e-6, atol=1e-6, err_msg=name)
    # Another action reorders: the graph ranks by the action it is given, not by one baked in.
    other = dict(inputs, fusion_action=np.asarray([manifest.fusion.high], dtype=np.float32))
    assert not np.allclose(_session(folder / RANK_BY_ACTION_FILE).run(["top_scores"], other)[0], ranked["top_scores"])


def test_a_resact_bundle_without_rank_by_action_is_refused(bundle: tuple[Path, Manifest], tmp_path: Path) -> None:
    folder, manifest = bundle
    copy = tmp_path / "bundle"
    shutil.copytree(folder, copy)
    (copy / RANK_BY_ACTION_FILE).unlink()
    graphs = {name: g for name, g in manifest.graphs.items() if name != RANK_BY_ACTION_GRAPH}
    actors = {name: a for name, a in manifest.actors.items() if name != RANK_BY_ACTION_GRAPH}
    files = {name: digest for name, digest in manifest.files.items() if name != RANK_BY_ACTION_FILE}
    stripped = manifest.model_copy(update={"graphs": graphs, "actors": actors, "files": files})
    (copy / MANIFEST_FILE).write_text(stripped.model_dump_json())
    with pytest.raises(BundleError, match="rank_by_action"):
        load_bundle(copy)


@pytest.mark.parametrize("n_candidates", [1, 7, 123])
def test_item_fusion_scores_every_candidate_in_one_call(bundle: tuple[Path, Manifest], n_candidates: int) -> None:
    folder, manifest = bundle
    inputs = item_fusion_inputs(manifest.feature_schema, n_candidates, np.random.default_rng(n_candidates))
    inputs["item_noise"] = np.zeros_like(inputs["item_noise"])
    mean, action, scores = _session(folder / ITEM_FUSION_FILE).run(list(ITEM_FUSION_OUTPUTS), inputs)

    a = 2 * len(manifest.feature_schema.objectives)
    assert mean.shape == action.shape == (n_candidates, a) and scores.shape == (n_candidates,)
    np.testing.assert_allclose(action, mean, atol=1e-6)  # zero noise serves the mean
    w, b = action[:, : a // 2], action[:, a // 2 :]
    expected = (w * np.log(np.maximum(inputs["mtl_predictions"], 0.0) + b)).sum(-1)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)
    low, high = np.array(manifest.fusion.low), np.array(manifest.fusion.high)
    assert np.all(action >= low - 1e-6) and np.all(action <= high + 1e-6)
