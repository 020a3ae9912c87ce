"""What a Locust worker loads: the load-test modules drive the service over HTTP, never import torch.

Viewers' rewards come from the simulator (models/sim), which is numpy only; the rest of models/
(networks, trainers) is torch. So the Locust modules may import contracts/, models.sim and each
other (pipelines.server, to start a server of their own; export.signing, to sign the version it
adds), nothing else of ours; importing them must leave torch unloaded.
"""

from __future__ import annotations

import subprocess
import sys

from tests.test_architecture import ROOT, imported_modules

LOCUST_MODULES = [
    "locustfile",
    "mix",
    "phases",
    "operator_cycle",
    "step_stats",
    "ramp",
    "own_server",
    "store_copy",
    "store_world",
]
# pipelines.server starts and stops a server (subprocess + HTTP polling), for a run without --host;
# export.signing (cryptography + contracts) re-signs the extra version the operator swaps to.
ALLOWED_OURS = (
    "contracts",
    "models.sim",
    "pipelines.server",
    "export.signing",
    *(f"loadtest.{name}" for name in LOCUST_MODULES),
)
OURS = {"contracts", "models", "export", "service", "pipelines", "loadtest", "cascade_cli", "tests"}
FORBIDDEN = {"torch", "onnx", "onnxruntime"}


def violations() -> list[str]:
    found = []
    for name in LOCUST_MODULES:
        path = ROOT / "loadtest" / f"{name}.py"
        for line, module in imported_modules(path.read_text(), f"loadtest.{name}"):
            top = module.split(".")[0]
            ours_but_not_allowed = top in OURS and not any(
                module == allowed or module.startswith(allowed + ".") for allowed in ALLOWED_OURS
            )
            if ours_but_not_allowed or top in FORBIDDEN:
                found.append(f"loadtest/{name}.py:{line} imports {module}")
    return found


def test_the_locust_modules_import_only_contracts_the_simulator_and_each_other() -> None:
    assert violations() == []


def test_importing_the_locustfiles_leaves_torch_unloaded() -> None:
    probe = "import sys, loadtest.locustfile, loadtest.ramp; sys.exit('torch' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr or "torch was imported"


def test_the_harness_and_its_helpers_do_not_load_locust() -> None:
    # Locust monkey-patches the standard library with gevent on import: inside pytest (torch loaded)
    # or the harness that would break threads and imports. Only Locust's own processes may load it.
    modules = "loadtest.run, loadtest.phases, loadtest.step_stats, loadtest.mix, loadtest.operator_cycle"
    probe = f"import sys, {modules}; sys.exit('locust' in sys.modules or 'gevent' in sys.modules)"

    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr or "locust was imported"
