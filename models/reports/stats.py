"""Statistics every results table uses: explicit seed lists, paired t intervals, the minimum detectable
effect, an independent random stream per (method, seed), and verdicts computed from the numbers.

numpy only (no scipy in the lock): Student-t quantiles come from a table of the exact values for the
degrees of freedom a seed study has, and the normal quantile beyond it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# t_{0.975, df} and t_{0.80, df} for df = 1..30 (standard tables), then 40, 60, 120, ∞.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_T80 = (
    1.376, 1.061, 0.978, 0.941, 0.920, 0.906, 0.896, 0.889, 0.883, 0.879,
    0.876, 0.873, 0.870, 0.868, 0.866, 0.865, 0.863, 0.862, 0.861, 0.860,
    0.859, 0.858, 0.858, 0.857, 0.856, 0.856, 0.855, 0.855, 0.854, 0.854,
)  # fmt: skip
_TAIL = {40: (2.021, 0.851), 60: (2.000, 0.848), 120: (1.980, 0.845)}
_Z975, _Z80 = 1.960, 0.842


def t_quantiles(df: int) -> tuple[float, float]:
    """(t_{0.975, df}, t_{0.80, df}): the two-sided 95 % critical value and the 80 %-power quantile."""
    if df < 1:
        raise ValueError("need at least 2 seeds for an interval")
    if df <= 30:
        return _T975[df - 1], _T80[df - 1]
    for limit, values in _TAIL.items():
        if df <= limit:
            return values
    return _Z975, _Z80


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0-9,101,202' → (0, 1, …, 9, 101, 202): non-negative, ranges inclusive, order kept, no repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo_text, hi_text = part.split("-", 1)
            lo, hi = int(lo_text), int(hi_text)
            if hi < lo:
                raise ValueError(f"seed range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError("no seeds given")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seed list {text!r} repeats a seed")
    return tuple(seeds)


def format_seeds(seeds: tuple[int, ...] | list[int]) -> str:
    """The inverse of parse_seeds, with runs of consecutive seeds written as ranges."""
    out: list[str] = []
    ordered = list(seeds)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def method_stream(seed: int, method: str, purpose: str = "train") -> np.random.Generator:
    """An RNG for one (seed, method, purpose): adding or removing a method never moves another's numbers.

    A stable hash (not Python's salted `hash`) of the method name goes into the SeedSequence entropy.
    """
    digest = int.from_bytes(hashlib.sha256(f"{method}/{purpose}".encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([seed, digest]))


def torch_seed(seed: int, method: str) -> int:
    """A torch.manual_seed value for one (seed, method), from the same stable hash."""
    return int(method_stream(seed, method, "torch").integers(0, 2**31 - 1))


@dataclass(frozen=True)
class Paired:
    """A paired comparison over seeds: first − second, per seed."""

    first: np.ndarray
    second: np.ndarray

    @property
    def diff(self) -> np.ndarray:
        out: np.ndarray = self.first - self.second
        return out

    @property
    def n(self) -> int:
        return int(self.diff.size)

    @property
    def mean(self) -> float:
        return float(self.diff.mean())

    @property
    def se(self) -> float:
        return float(self.diff.std(ddof=1) / np.sqrt(self.n))

    @property
    def interval(self) -> tuple[float, float]:
        """t-based 95 % confidence interval of the mean paired difference."""
        t, _ = t_quantiles(self.n - 1)
        return self.mean - t * self.se, self.mean + t * self.se

    @property
    def mde(self) -> float:
        """Minimum detectable effect: the true mean difference a two-sided 5 % paired t test finds with
        80 % power at this number of seeds and this spread of paired differences."""
        t, power = t_quantiles(self.n - 1)
        return (t + power) * self.se

    @property
    def relative(self) -> float:
        """Mean difference relative to the second's mean (for '%' columns)."""
        return self.mean / (abs(float(self.second.mean())) + 1e-12)

    @property
    def wins(self) -> int:
        return int((self.diff > 0).sum())

    def verdict(self, expected_sign: int = 1) -> str:
        """'holds' when the interval excludes 0 on the paper's side, 'against' on the other side, else
        'not shown' (an interval that covers 0: no direction at this number of seeds)."""
        lo, hi = self.interval
        signed = (expected_sign * lo, expected_sign * hi)
        if min(signed) > 0:
            return "holds"
        if max(signed) < 0:
            return "against"
        return "not shown"


def describe(p: Paired, first: str, second: str, metric: str, expected_sign: int = 1, digits: int = 2) -> str:
    """One sentence generated from the numbers: direction, interval, relative size, MDE and verdict."""
    lo, hi = p.interval
    verdict = p.verdict(expected_sign)
    direction = "higher than" if p.mean > 0 else "lower than" if p.mean < 0 else "level with"
    side = "above" if expected_sign > 0 else "below"
    text = (
        f"{first} is {direction} {second} on {metric} by {p.mean:+.{digits}f} "
        f"({p.relative:+.1%}; 95 % CI [{lo:+.{digits}f}, {hi:+.{digits}f}], {p.wins}/{p.n} seeds higher, "
        f"MDE {p.mde:.{digits}f})"
    )
    if verdict == "holds":
        return f"{text}: the paper's direction ({side}) holds."
    if verdict == "against":
        return f"{text}: against the paper's direction ({side})."
    return f"{text}: the interval covers 0, so no direction is shown at {p.n} seeds."
