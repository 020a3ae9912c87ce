"""Drawing the fusion actor's latent noise: explore on a share of requests, within bounds.

The noise is drawn here, not in the graph, so it is logged with the decision and the
request replays exactly (DESIGN.md, "Decision record": the latent draws).
"""

from __future__ import annotations

import numpy as np

from export.manifest import Manifest
from service.cascade import F32


class NoiseSource:
    """Per-worker generator of exploration noise."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def draw(self, manifest: Manifest) -> tuple[F32, bool]:
        """[1, A] standard-normal draws clipped to ±noise_clip, or zeros when this request exploits."""
        exploration = manifest.fusion.exploration
        dim = manifest.fusion.dim
        if self._rng.random() >= exploration.probability:
            return np.zeros((1, dim), dtype=np.float32), False
        noise = self._rng.standard_normal((1, dim), dtype=np.float32)
        np.clip(noise, -exploration.noise_clip, exploration.noise_clip, out=noise)
        return noise, True
