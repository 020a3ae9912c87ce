"""What a session trainer's log (models/env/episodes.py, TrainLog as a dict) says of its noise: the two
quantities SRS (seed paper 002) claims to lower. NaN when the log does not hold them (a baseline)."""

from __future__ import annotations

from typing import Any

import numpy as np


def signal_std(log: dict[str, Any] | None) -> float:
    """The per-batch std of the scaled reward the critic regresses on (for SRS its estimate), mean over updates."""
    signal = ((log or {}).get("extra") or {}).get("signal_std")
    return float(np.mean(signal)) if signal else float("nan")


def gradient_cv(log: dict[str, Any] | None) -> float:
    """std / mean of the actor's gradient norm over the second half of training."""
    norms = np.asarray((log or {}).get("grad_norms") or [], dtype=np.float64)
    tail = norms[len(norms) // 2 :]
    return float(tail.std() / tail.mean()) if tail.size > 1 and tail.mean() > 0 else float("nan")
