"""The figures `stackemu bench` prints: the median and spread of a figure's samples over
the repetitions, latency percentiles over one sample's round trips, and the ratio
emulator/kernel."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Summary:
    """A figure over its repetitions: the median, min-max, and the quartiles (q3 - q1
    is the IQR). n is the number of samples."""

    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def summarize(samples: Sequence[float]) -> Summary:
    """Median, min, max and quartiles of samples (one or more). The quartiles are the
    'inclusive' method's (linear interpolation between the closest ranks, the sample
    treated as the whole population), so one sample has q1 = q3 = itself."""
    if not samples:
        raise ValueError("no samples to summarize")
    values = sorted(samples)
    if len(values) == 1:
        q1 = q3 = values[0]
    else:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(len(values), statistics.median(values), values[0], values[-1], q1, q3)


def percentile(samples: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest sample with at least pct % of the
    samples at or below it (p50 of 1..100 is 50, p99 is 99; p99 of ten samples is the
    largest)."""
    if not samples:
        raise ValueError("no samples for a percentile")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {pct}")
    values = sorted(samples)
    rank = math.ceil(pct / 100 * len(values))
    return values[rank - 1]


def ratio(emulated: float, kernel: float) -> float | None:
    """emulated / kernel, or None when the kernel's figure is 0 (nothing to compare with)."""
    if kernel == 0:
        return None
    return emulated / kernel


def meets(value: float | None, op: str, bound: float) -> bool | None:
    """Whether a ratio meets its target (op '>=' or '<='); None without a ratio."""
    if value is None:
        return None
    if op == ">=":
        return value >= bound
    if op == "<=":
        return value <= bound
    raise ValueError(f"unknown comparison {op!r}")


def ratio_summary(num: Summary, den: Summary) -> Summary | None:
    """num / den for two figures measured apart (a loaded run over the unloaded one):
    the ratio of the medians, and as spread the widest the two allow (the least of num
    over the most of den, and so on); None when den can be 0."""
    if den.min <= 0:
        return None
    return Summary(
        n=min(num.n, den.n),
        median=num.median / den.median,
        min=num.min / den.max,
        max=num.max / den.min,
        q1=num.q1 / den.q3,
        q3=num.q3 / den.q1,
    )
