"""fusion.onnx: the fusion actor and RND alone, exported beside the cascade graph from the same modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from contracts.manifest import (
    CASCADE_OUTPUTS,
    FUSION_GRAPH,
    FUSION_OUTPUTS,
    MANIFEST_FILE,
    Manifest,
    fusion_graph_spec,
    sha256_of,
)
from export.exporter import ParityError, example_inputs
from models.algorithms.demo_policy import DemoTraining
from models.nets.cascade import CascadePolicy
from tests.export.test_exporter import export


@pytest.fixture(scope="module")
def bundle(trained: DemoTraining, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    out = tmp_path_factory.mktemp("fusion-bundle")
    return out, export(trained.policy, out)


def test_the_manifest_declares_hashes_and_vouches_for_the_fusion_graph(bundle: tuple[Path, Manifest]) -> None:
    out, manifest = bundle
    spec = manifest.graphs[FUSION_GRAPH]
    assert spec == fusion_graph_spec(manifest.feature_schema)
    assert manifest.files[spec.file] == sha256_of(out / spec.file)
    assert manifest.fusion_parity.passed and 0.0 <= manifest.fusion_parity.max_abs_error <= 1e-4


def test_the_fusion_graph_gives_what_the_cascade_graph_gives_for_the_same_state_and_noise(
    bundle: tuple[Path, Manifest],
) -> None:
    out, manifest = bundle
    cascade = ort.InferenceSession(str(out / "cascade.onnx"), providers=["CPUExecutionProvider"])
    fusion = ort.InferenceSession(str(out / manifest.graphs[FUSION_GRAPH].file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for scale in (0.0, 1.0, 5.0):  # the mean, an exploring draw, a draw clipped at the bounds
        inputs = example_inputs(manifest.feature_schema, 30, manifest.stage_sizes, 10, rng)
        inputs["fusion_noise"] = (inputs["fusion_noise"] * scale).astype(np.float32)
        whole = dict(zip(CASCADE_OUTPUTS, cascade.run(list(CASCADE_OUTPUTS), inputs), strict=True))
        alone = fusion.run(list(FUSION_OUTPUTS), {name: inputs[name] for name in ("user", "context", "fusion_noise")})
        for name, value in zip(FUSION_OUTPUTS, alone, strict=True):
            np.testing.assert_allclose(value, whole[name], rtol=0, atol=1e-6, err_msg=name)


class _TracedBranch(CascadePolicy):
    """A fusion step with a Python branch on the noise: tracing freezes it, so ONNX disagrees with torch on
    the zero-noise cases (the same trap as a traced `min(k, n)`)."""

    def fusion_step(self, user: torch.Tensor, context: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        *fusion, novelty = super().fusion_step(user, context, noise)
        return (*fusion, novelty if bool(noise.abs().sum() > 0) else novelty + 1.0)


def test_a_fusion_graph_that_disagrees_with_torch_is_refused_and_no_manifest_is_written(
    trained: DemoTraining, tmp_path: Path
) -> None:
    broken = _TracedBranch(trained.policy.config)
    broken.load_state_dict(trained.policy.state_dict())
    with pytest.raises(ParityError, match="novelty"):
        export(broken, tmp_path)
    assert not (tmp_path / MANIFEST_FILE).exists()
