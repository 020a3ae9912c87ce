"""The command-line tools the deploy tests run, found on PATH or the reason the test is skipped.

CI installs them where its registry has them (.ci/run: Debian's `prometheus` package ships promtool);
Debian has no kubectl recent enough for `kubectl kustomize` with `patches` (bookworm's
kubernetes-client is 1.20, whose kustomize v2 predates it), so rendering is skipped without one.
"""

from __future__ import annotations

import shutil

import pytest

INSTALL_HINTS = {
    "promtool": "apt-get install -y prometheus (Debian) ships it",
    "kubectl": "install kubectl >= 1.27 (kubernetes.io/docs/tasks/tools); Debian's kubernetes-client is too old",
}


def require(binary: str) -> str:
    """The tool's path, or skip the calling test saying how to get it."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed: {INSTALL_HINTS[binary]}")
    return path
