"""Statistics over seeds: ``np.std`` (population, ddof=0) exactly as CoOp's parser, or a 95% CI half-width; and the
base-to-new harmonic mean."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def spread(values: Sequence[float], ci95: bool = False) -> float:
    """``np.std`` (population, as CoOp's parser), or the 95% CI half-width ``1.96 * std / sqrt(n)``."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan")
    std = float(np.std(values))
    return 1.96 * std / math.sqrt(values.size) if ci95 else std


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN / (B + N), the base-to-new harmonic mean (0 when both are 0)."""
    return 2.0 * base * new / (base + new) if (base + new) else 0.0
