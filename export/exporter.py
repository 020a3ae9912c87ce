"""Export a trained `CascadePolicy` to a model bundle: `cascade.onnx` + `fusion.onnx` + `manifest.json`.

Steps, each of which can refuse the bundle:
1. `torch.onnx.export` (the TorchScript-based exporter: it keeps TopK's k dynamic when k is computed
   from tensor shapes) with N dynamic on the candidate inputs and k on the top-k outputs;
2. the graph's real inputs and outputs are checked against `cascade_graph_spec` (names, order, dtypes,
   fixed widths, dynamic axis names);
3. parity: torch and onnxruntime run the same random requests for N = 1 and N below, at and above every
   stage size, with k < N, k == N and k > N; indices must be equal and floats within the tolerance;
4. the fusion graph (`CascadePolicy.fusion_step`: the fusion actor and RND alone, for /v1/fusion) gets the
   same signature check and a parity run over random user states, with and without exploration noise;
5. the torch checkpoint `policy.pt` is saved beside the graph (models/nets/checkpoint.py: warm starts);
6. only then is `manifest.json` written, with every file's sha256 and the parity result.
A failure raises and writes no manifest, so the folder can never be published (store.publish reads it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from contracts.manifest import (
    CASCADE_GRAPH,
    CASCADE_INPUTS,
    CASCADE_OUTPUTS,
    FUSION_GRAPH,
    FUSION_INPUTS,
    FUSION_OUTPUTS,
    MANIFEST_FILE,
    FeatureSchema,
    FusionAction,
    GraphSpec,
    Manifest,
    Parity,
    Stage,
    cascade_graph_spec,
    fusion_graph_spec,
    sha256_of,
)
from contracts.signing import SIGNATURE_FILE
from models.nets.cascade import CascadePolicy
from models.nets.checkpoint import CHECKPOINT_FILE, save_checkpoint

CASCADE_FILE = "cascade.onnx"
FUSION_FILE = "fusion.onnx"
DEFAULT_TOLERANCE = 1e-4
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}
_NUMPY_DTYPES = {"float32": np.float32, "int64": np.int64}


class ExportError(RuntimeError):
    """The policy, the bundle description or the exported graph disagree with the manifest contract."""


class ParityError(ExportError):
    """onnxruntime does not reproduce torch on some request: the graph is not what was trained."""


def export_bundle(
    policy: CascadePolicy,
    out_dir: Path,
    *,
    policy_name: str,
    version: str,
    feature_schema: FeatureSchema,
    stages: Sequence[Stage],
    fusion_action_spec: FusionAction,
    training: Mapping[str, object],
    evaluation: Mapping[str, object] | None = None,
    opset: int = 17,
    tolerance: float = DEFAULT_TOLERANCE,
    default_k: int = 10,
) -> Manifest:
    """Export, verify and describe one bundle in `out_dir`; returns the manifest it wrote.

    Raises ExportError if the policy does not match the schema or the graph does not match the spec,
    ParityError if onnxruntime disagrees with torch; in both cases no manifest.json is written.
    """
    check_policy_matches(policy, feature_schema, fusion_action_spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / MANIFEST_FILE
    manifest_path.unlink(missing_ok=True)  # a stale manifest must not vouch for a new graph
    graph_path = out_dir / CASCADE_FILE
    stage_sizes = [stage.keep for stage in stages]

    export_cascade(policy, graph_path, feature_schema, stage_sizes, opset=opset)
    spec = cascade_graph_spec(feature_schema, file=CASCADE_FILE)
    check_graph_signature(graph_path, spec)
    parity = check_parity(policy, graph_path, feature_schema, stage_sizes, default_k=default_k, tolerance=tolerance)
    fusion_path = out_dir / FUSION_FILE
    export_fusion(policy, fusion_path, feature_schema, opset=opset)
    fusion_spec = fusion_graph_spec(feature_schema, file=FUSION_FILE)
    check_graph_signature(fusion_path, fusion_spec)
    fusion_parity = check_fusion_parity(
        policy, fusion_path, feature_schema, noise_clip=fusion_action_spec.exploration.noise_clip, tolerance=tolerance
    )

    # The torch weights ride along (hashed like the graph) so training can warm-start from this version.
    save_checkpoint(policy, out_dir / CHECKPOINT_FILE)
    # The signature is over the manifest, so it cannot be listed in it (contracts/signing.py).
    files = {
        p.name: sha256_of(p)
        for p in sorted(out_dir.iterdir())
        if p.is_file() and p.name not in (MANIFEST_FILE, SIGNATURE_FILE)
    }
    manifest = Manifest(
        policy=policy_name,
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        feature_schema=feature_schema,
        stages=list(stages),
        fusion=fusion_action_spec,
        graphs={CASCADE_GRAPH: spec, FUSION_GRAPH: fusion_spec},
        files=files,
        opset=opset,
        parity=parity,
        fusion_parity=fusion_parity,
        training=dict(training),
        evaluation=dict(evaluation or {}),
    )
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    tmp.replace(manifest_path)
    return manifest


def check_policy_matches(policy: CascadePolicy, schema: FeatureSchema, fusion: FusionAction) -> None:
    """The manifest must describe the policy it ships: widths, objectives and the fusion action's box."""
    config = policy.config
    widths = (config.user_dim, config.context_dim, config.item_dim, list(config.objectives))
    expected = (schema.user_dim, schema.context_dim, schema.item_dim, schema.objectives)
    if widths != expected:
        raise ExportError(f"policy widths/objectives {widths} differ from the feature schema {expected}")
    if fusion.names != config.action_names:
        raise ExportError(f"fusion action names {fusion.names} differ from the policy's {config.action_names}")
    low = policy.fusion.low.detach().cpu().numpy()
    high = policy.fusion.high.detach().cpu().numpy()
    if not (np.allclose(low, fusion.low, atol=1e-6) and np.allclose(high, fusion.high, atol=1e-6)):
        raise ExportError("fusion action bounds in the manifest differ from the policy's bounds")


def example_inputs(
    schema: FeatureSchema, n_candidates: int, stage_sizes: Sequence[int], k: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random inputs of one request with N = n_candidates, in `CASCADE_INPUTS` order."""
    n_objectives = len(schema.objectives)
    inputs = {
        "user": rng.standard_normal((1, schema.user_dim)),
        "context": rng.standard_normal((1, schema.context_dim)),
        "item_features": rng.standard_normal((n_candidates, schema.item_dim)),
        # Mostly valid predictions, a few slightly negative ones to exercise the clamp at 0.
        "mtl_predictions": rng.uniform(-0.05, 2.0, (n_candidates, n_objectives)),
        "fusion_noise": rng.standard_normal((1, 2 * n_objectives)),
        "stage_sizes": np.asarray(stage_sizes),
        "k": np.asarray([k]),
    }
    return {name: inputs[name].astype(_NUMPY_DTYPES[dtype]) for name, (dtype, _) in CASCADE_INPUTS.items()}


def export_cascade(
    policy: CascadePolicy, path: Path, schema: FeatureSchema, stage_sizes: Sequence[int], *, opset: int = 17
) -> None:
    """Trace `policy` into an ONNX graph at `path` with the manifest's input and output names."""
    policy.eval()
    # Trace with every stage actually filtering (N above the first stage size), though the graph must not
    # depend on it: parity runs other N.
    example = example_inputs(schema, max(stage_sizes) + 1, stage_sizes, 10, np.random.default_rng(0))
    args = tuple(torch.from_numpy(v) for v in example.values())
    dynamic_axes = {
        "item_features": {0: "N"},
        "mtl_predictions": {0: "N"},
        "top_indices": {0: "k"},
        "top_scores": {0: "k"},
    }
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated and the tracer warns about shape reads; the
        # graph's correctness is established by the parity check below, not by these warnings.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            policy,
            args,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(CASCADE_INPUTS),
            output_names=list(CASCADE_OUTPUTS),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))


class FusionGraph(torch.nn.Module):
    """`CascadePolicy.fusion_step` as a module to trace: FUSION_INPUTS → FUSION_OUTPUTS, in order."""

    def __init__(self, policy: CascadePolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self, user: torch.Tensor, context: torch.Tensor, fusion_noise: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return self.policy.fusion_step(user, context, fusion_noise)


def fusion_example_inputs(
    schema: FeatureSchema, rng: np.random.Generator, noise_scale: float = 1.0
) -> dict[str, np.ndarray]:
    """Random inputs of one fusion call, in `FUSION_INPUTS` order: the cascade's user state and noise draws."""
    cascade = example_inputs(schema, 1, [1, 1, 1], 1, rng)
    inputs = {name: cascade[name] for name in FUSION_INPUTS}
    inputs["fusion_noise"] = (inputs["fusion_noise"] * noise_scale).astype(np.float32)
    return inputs


def export_fusion(policy: CascadePolicy, path: Path, schema: FeatureSchema, *, opset: int = 17) -> None:
    """Trace the policy's fusion actor and RND (`fusion_step`) into an ONNX graph at `path`."""
    graph = FusionGraph(policy).eval()
    example = fusion_example_inputs(schema, np.random.default_rng(0))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation warning; parity decides
        torch.onnx.export(
            graph,
            tuple(torch.from_numpy(v) for v in example.values()),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(FUSION_INPUTS),
            output_names=list(FUSION_OUTPUTS),
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))


def check_fusion_parity(
    policy: CascadePolicy,
    path: Path,
    schema: FeatureSchema,
    *,
    noise_clip: float,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> Parity:
    """torch's `fusion_step` against onnxruntime on random user states: every other case serves the mean
    (zero noise); the others draw noise as the service does, clipped to ±`noise_clip` stds, the largest
    ones at that clip, so the action meets the manifest's bounds wherever the clip reaches them. Noise
    beyond the clip never reaches the graph; there log π's float32 rounding alone exceeds the tolerance."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    graph = FusionGraph(policy).eval()
    max_error = 0.0
    for i, scale in enumerate((1.0, 0.0, 1.0, 0.0, 3.0, 0.0, 10.0, 0.0)):
        inputs = fusion_example_inputs(schema, rng, noise_scale=scale)
        inputs["fusion_noise"] = np.clip(inputs["fusion_noise"], -noise_clip, noise_clip)
        with torch.no_grad():
            expected = [t.numpy() for t in graph(*(torch.from_numpy(v) for v in inputs.values()))]
        try:
            got = session.run(list(FUSION_OUTPUTS), inputs)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ParityError(f"onnxruntime failed on the fusion graph (case {i}): {exc}") from exc
        max_error = max(max_error, compare_outputs(FUSION_OUTPUTS, expected, got, tolerance, f" (fusion case {i})"))
    return Parity(max_abs_error=max_error, tolerance=tolerance, candidate_counts=[], passed=True)


def check_graph_signature(path: Path, spec: GraphSpec) -> None:
    """The graph's real inputs and outputs must be the spec's: names in order, dtypes, widths, axis names."""
    graph = onnx.load(str(path)).graph
    initializers = {init.name for init in graph.initializer}
    real_inputs = [value for value in graph.input if value.name not in initializers]
    for kind, real, wanted in (
        ("input", real_inputs, spec.inputs),
        ("output", list(graph.output), spec.outputs),
    ):
        names = [value.name for value in real]
        if names != [tensor.name for tensor in wanted]:
            raise ExportError(f"graph {kind}s {names} differ from the spec's {[t.name for t in wanted]}")
        for value, tensor in zip(real, wanted, strict=True):
            tensor_type = value.type.tensor_type
            dtype = _ONNX_DTYPES.get(tensor_type.elem_type, str(tensor_type.elem_type))
            shape: list[int | str] = [dim.dim_param or dim.dim_value for dim in tensor_type.shape.dim]
            if dtype != tensor.dtype or shape != tensor.shape:
                raise ExportError(
                    f"graph {kind} {value.name} is {dtype}{shape}, the spec says {tensor.dtype}{tensor.shape}"
                )


def parity_cases(stage_sizes: Sequence[int], default_k: int) -> list[tuple[int, int]]:
    """(N, k) pairs: N = 1 and N below, at and above every stage size with the default k; k == N
    (tiny, at k, at the last stage size); k above a stage size; k above N."""
    counts = {1, 2, default_k}
    for size in stage_sizes:
        counts |= {size - 1, size, size + 1}
    cases = [(n, default_k) for n in sorted(c for c in counts if c >= 1)]
    last = stage_sizes[-1]
    cases += [
        (1, 1),
        (default_k, default_k),
        (last, last),
        (max(stage_sizes) + 1, last + 1),
        (3, default_k + 5),
    ]
    return cases


# Score gap below which a stage's cut is a tie: torch and onnxruntime round sums differently (about 1e-7 of
# a score of order 1), so candidates closer than this may be kept by one runtime and dropped by the other.
TIE_MARGIN = 1e-5


def _untied_inputs(
    policy: CascadePolicy, schema: FeatureSchema, n: int, stage_sizes: Sequence[int], k: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random inputs of N candidates whose stage cuts are not ties (redrawn until they are not, at most 20
    times): parity compares the graphs, not how two runtimes break a tie."""
    for _ in range(20):
        inputs = example_inputs(schema, n, stage_sizes, k, rng)
        state = torch.from_numpy(np.concatenate([inputs["user"], inputs["context"]], axis=-1))
        items = torch.from_numpy(inputs["item_features"]).unsqueeze(0)
        margin = policy.cut_margin(state, items, torch.from_numpy(inputs["stage_sizes"]), torch.from_numpy(inputs["k"]))
        if margin > TIE_MARGIN:
            return inputs
    raise ParityError(f"N={n}, k={k}: every draw of 20 had a tie at a stage's cut (gap ≤ {TIE_MARGIN:g})")


def check_parity(
    policy: CascadePolicy,
    path: Path,
    schema: FeatureSchema,
    stage_sizes: Sequence[int],
    *,
    default_k: int = 10,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> Parity:
    """Run torch and onnxruntime on the same random requests and compare every output.

    Integer outputs (indices, survivor counts) must be equal, including their shapes; float outputs must
    agree within `tolerance` (max absolute error). Every other case serves the fusion mean (zero noise).
    Raises ParityError on the first disagreement or if onnxruntime cannot run a case.
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    cases = parity_cases(stage_sizes, default_k)
    max_error = 0.0
    policy.eval()
    for i, (n, k) in enumerate(cases):
        inputs = _untied_inputs(policy, schema, n, stage_sizes, k, rng)
        if i % 2:
            inputs["fusion_noise"] = np.zeros_like(inputs["fusion_noise"])
        with torch.no_grad():
            expected = [t.numpy() for t in policy(*(torch.from_numpy(v) for v in inputs.values()))]
        try:
            got = session.run(list(CASCADE_OUTPUTS), inputs)
        except Exception as exc:  # onnxruntime raises its own untyped errors (Fail, InvalidArgument, ...)
            raise ParityError(f"onnxruntime failed on N={n}, k={k}: {exc}") from exc
        max_error = max(max_error, compare_outputs(CASCADE_OUTPUTS, expected, got, tolerance, f" (N={n}, k={k})"))
    return Parity(
        max_abs_error=max_error,
        tolerance=tolerance,
        candidate_counts=sorted({n for n, _ in cases}),
        passed=True,
    )


def compare_outputs(
    outputs: Mapping[str, tuple[str, tuple[str, ...]]],
    expected: Sequence[np.ndarray],
    got: Sequence[object],
    tolerance: float,
    where: str = "",
) -> float:
    """torch's outputs against onnxruntime's, in `outputs` order: shapes and int outputs must be equal, float
    outputs within `tolerance`. Returns the max abs error; raises ParityError naming the output (and `where`)."""
    max_error = 0.0
    for name, want, answer in zip(outputs, expected, got, strict=True):
        have = np.asarray(answer)
        if want.shape != have.shape:
            raise ParityError(f"{name}: torch shape {want.shape}, onnxruntime {have.shape}{where}")
        if outputs[name][0] == "int64":
            if not np.array_equal(want, have):
                raise ParityError(f"{name} differs between torch and onnxruntime{where}")
        elif want.size:
            error = float(np.max(np.abs(want.astype(np.float64) - have.astype(np.float64))))
            if not error <= tolerance:  # also catches NaN
                raise ParityError(f"{name}: max abs error {error:.3g} > {tolerance:g}{where}")
            max_error = max(max_error, error)
    return max_error
