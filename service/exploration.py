"""Drawing the fusion actor's latent noise: explore on a share of requests, within bounds.

The noise is drawn here, not in the graph, so it is logged with the decision and the
request replays exactly (DESIGN.md, "Decision record": the latent draws).
"""

from __future__ import annotations

import threading

import numpy as np

from contracts.manifest import Manifest
from service.cascade import F32


class NoiseSource:
    """Per-worker generator of exploration noise."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()  # requests run in a threadpool; a Generator is not thread-safe

    def draw(self, manifest: Manifest) -> tuple[F32, bool]:
        """[1, A] standard-normal draws clipped to ±noise_clip, or zeros when this request exploits."""
        exploration = manifest.fusion.exploration
        dim = manifest.fusion.dim
        with self._lock:
            explore = self._rng.random() < exploration.probability
            noise = self._rng.standard_normal((1, dim), dtype=np.float32)
        if not explore:
            return np.zeros((1, dim), dtype=np.float32), False
        np.clip(noise, -exploration.noise_clip, exploration.noise_clip, out=noise)
        return noise, True

    def latents(self, n_draws: int, dim: int) -> F32:
        """[1, n_draws, dim] standard-normal draws for ResAct's decoder (always drawn: they are its policy)."""
        with self._lock:
            return self._rng.standard_normal((1, n_draws, dim), dtype=np.float32)

    def item_noise(self, manifest: Manifest, n: int) -> F32:
        """[N, A] per-item exploration draws (clipped), or zeros when this request exploits."""
        exploration = manifest.fusion.exploration
        dim = manifest.fusion.dim
        with self._lock:
            if self._rng.random() >= exploration.probability:
                return np.zeros((n, dim), dtype=np.float32)
            noise = self._rng.standard_normal((n, dim), dtype=np.float32)
        np.clip(noise, -exploration.noise_clip, exploration.noise_clip, out=noise)
        return noise
