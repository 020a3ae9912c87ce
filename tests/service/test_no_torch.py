"""Serving must run on onnxruntime alone: importing the service never imports torch."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_service_does_not_import_torch() -> None:
    code = (
        "import sys; import service.main, service.app, service.ranker, service.registry, cascade_cli; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
