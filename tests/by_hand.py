"""Hand computations that several test modules compare the code against (not a test module)."""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval, written out (Wilson 1927; Brown, Cai & DasGupta 2001, eq. 4)."""
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half
