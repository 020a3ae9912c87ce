from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from contracts.manifest import CASCADE_OUTPUTS, MANIFEST_FILE, Manifest, cascade_graph_spec, sha256_of
from contracts.store import active_version, read_manifest
from export.exporter import ExportError, ParityError, example_inputs, export_bundle, parity_cases
from models.algorithms.a3c import A3CConfig
from models.algorithms.demo_policy import DemoConfig, DemoTraining, bundle_description
from models.nets.cascade import CascadePolicy
from pipelines.demo import build_demo
from tests.tiny_policy import TINY


def export(policy: CascadePolicy, out_dir: Path, version: str = "v1") -> Manifest:
    schema, stages, fusion = bundle_description(policy, TINY)
    return export_bundle(
        policy,
        out_dir,
        policy_name="demo",
        version=version,
        feature_schema=schema,
        stages=stages,
        fusion_action_spec=fusion,
        training={"note": "tiny"},
    )


@pytest.fixture(scope="module")
def bundle(trained: DemoTraining, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("bundle")
    return out, export(trained.policy, out)


def test_manifest_records_a_passed_parity_over_every_stage_boundary(bundle: tuple[Path, Manifest]) -> None:
    _, manifest = bundle
    assert manifest.parity.passed and manifest.parity.tolerance == 1e-4
    assert 0.0 <= manifest.parity.max_abs_error <= 1e-4
    counts = set(manifest.parity.candidate_counts)
    assert 1 in counts
    assert all({s - 1, s, s + 1} <= counts for s in manifest.stage_sizes)
    assert manifest.graphs["cascade"] == cascade_graph_spec(manifest.feature_schema)
    assert manifest.opset == 17 and manifest.training == {"note": "tiny"}


def test_manifest_hashes_every_file_but_itself(bundle: tuple[Path, Manifest]) -> None:
    out, manifest = bundle
    on_disk = {p.name for p in out.iterdir() if p.is_file()}
    assert set(manifest.files) == on_disk - {MANIFEST_FILE} == {"cascade.onnx", "fusion.onnx", "policy.pt"}
    for name, digest in manifest.files.items():
        assert digest == hashlib.sha256((out / name).read_bytes()).hexdigest() == sha256_of(out / name)
    assert read_manifest(out) == manifest
    assert json.loads((out / MANIFEST_FILE).read_text())["policy"] == "demo"


@pytest.mark.parametrize(("n", "k"), [*parity_cases(TINY.stage_sizes, TINY.k), (1000, 10)])
def test_onnx_graph_matches_torch_below_at_and_above_stage_sizes(
    trained: DemoTraining, bundle: tuple[Path, Manifest], n: int, k: int
) -> None:
    out, manifest = bundle
    session = ort.InferenceSession(str(out / "cascade.onnx"), providers=["CPUExecutionProvider"])
    inputs = example_inputs(manifest.feature_schema, n, manifest.stage_sizes, k, np.random.default_rng(n * 31 + k))
    got = dict(zip(CASCADE_OUTPUTS, session.run(list(CASCADE_OUTPUTS), inputs), strict=True))
    with torch.no_grad():
        want = [t.numpy() for t in trained.policy(*(torch.from_numpy(v) for v in inputs.values()))]
    for name, expected in zip(CASCADE_OUTPUTS, want, strict=True):
        assert got[name].shape == expected.shape, name
        if expected.dtype == np.int64:
            assert np.array_equal(got[name], expected), name
        else:
            assert np.max(np.abs(got[name] - expected), initial=0.0) <= 1e-4, name
    kept = n
    for size, survivors in zip(manifest.stage_sizes, got["stage_survivors"], strict=True):
        kept = min(kept, max(size, k))
        assert survivors == kept
    assert len(got["top_indices"]) == min(n, k)


class PythonIntCandidateCount(CascadePolicy):
    """The DESIGN.md trap: n read as a Python int is traced as the example's N, so TopK's k is frozen."""

    def keep(self, n_in: torch.Tensor, size: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.minimum(torch.tensor(int(n_in)), torch.maximum(size, k))


class PythonIntKeep(CascadePolicy):
    """min(n, max(size, k)) entirely on Python ints: the tracer drops the stage_sizes input altogether."""

    def keep(self, n_in: torch.Tensor, size: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.tensor(min(int(n_in), max(int(size), int(k))))


class FrozenCandidateCount(CascadePolicy):
    """A float read from a shape through Python: traced as the example's N, wrong for every other N."""

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = list(super().forward(*inputs))
        outputs[-1] = outputs[-1] * float(inputs[2].shape[0])  # novelty scaled by N, frozen under tracing
        return tuple(outputs)


@pytest.mark.parametrize(
    ("broken", "error", "message"),
    [
        (PythonIntCandidateCount, ParityError, "onnxruntime failed"),
        (FrozenCandidateCount, ParityError, "novelty: max abs error"),
        (PythonIntKeep, ExportError, "stage_sizes"),
    ],
)
def test_broken_graph_raises_and_writes_no_manifest(
    trained: DemoTraining, tmp_path: Path, broken: type[CascadePolicy], error: type[Exception], message: str
) -> None:
    policy = broken(trained.policy.config)
    policy.load_state_dict(trained.policy.state_dict())
    (tmp_path / MANIFEST_FILE).write_text("{}")  # a stale manifest from an earlier export must not survive
    with pytest.raises(error, match=message):
        export(policy, tmp_path)
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_bundle_description_must_match_the_policy(trained: DemoTraining, tmp_path: Path) -> None:
    schema, stages, fusion = bundle_description(trained.policy, TINY)
    wider = fusion.model_copy(update={"high": [h + 1.0 for h in fusion.high]})
    with pytest.raises(ExportError, match="bounds"):
        export_bundle(
            trained.policy,
            tmp_path,
            policy_name="demo",
            version="v1",
            feature_schema=schema,
            stages=stages,
            fusion_action_spec=wider,
            training={},
        )
    assert not (tmp_path / "cascade.onnx").exists()


def test_build_demo_publishes_an_active_verified_bundle(tmp_path: Path) -> None:
    quick = DemoConfig(head_steps=20, rnd_steps=20, a3c=A3CConfig(steps=5, batch=16), eval_requests=8)
    manifest = build_demo(tmp_path / "store", policy="demo", seed=0, version="t1", config=quick)
    assert active_version(tmp_path / "store", "demo") == "t1"
    bundle = tmp_path / "store" / "demo" / "t1"
    assert read_manifest(bundle) == manifest
    assert manifest.files["cascade.onnx"] == sha256_of(bundle / "cascade.onnx")
    assert manifest.stage_sizes == [500, 100, 50] and manifest.fusion.exploration.probability == 0.1
    assert manifest.parity.passed


def test_the_bundle_carries_a_hashed_checkpoint_that_rebuilds_the_same_policy(
    bundle: tuple[Path, Manifest], trained: DemoTraining, tmp_path: Path
) -> None:
    from models.nets.checkpoint import CheckpointError, load_checkpoint

    out, manifest = bundle
    restored = load_checkpoint(out, manifest)
    inputs = example_inputs(manifest.feature_schema, 120, manifest.stage_sizes, 7, np.random.default_rng(3))
    with torch.no_grad():
        want = trained.policy(*(torch.from_numpy(v) for v in inputs.values()))
        have = restored(*(torch.from_numpy(v) for v in inputs.values()))
    for a, b in zip(want, have, strict=True):
        assert torch.equal(a, b)

    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "policy.pt").write_bytes((out / "policy.pt").read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tampered, manifest)


def test_a_tie_at_a_stage_cut_is_measured(trained: DemoTraining) -> None:
    policy = trained.policy
    _, stages, _ = bundle_description(policy, TINY)
    sizes = [stage.keep for stage in stages]
    n = sizes[0] + 1  # the first stage drops exactly one candidate
    inputs = example_inputs(bundle_description(policy, TINY)[0], n, sizes, 10, np.random.default_rng(3))
    state = torch.from_numpy(np.concatenate([inputs["user"], inputs["context"]], axis=-1))
    items = torch.from_numpy(inputs["item_features"]).unsqueeze(0)
    size_t, k_t = torch.from_numpy(inputs["stage_sizes"]), torch.from_numpy(inputs["k"])
    assert policy.cut_margin(state, items, size_t, k_t) > 0.0
    # Make every candidate the same item: every score ties, at every cut.
    tied = items[:, :1].expand_as(items).contiguous()
    assert policy.cut_margin(state, tied, size_t, k_t) == 0.0
