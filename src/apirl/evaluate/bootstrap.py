"""Bootstrap confidence intervals for per-sample metrics."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values: list[float] | np.ndarray, *, samples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (mean, mean) when there is nothing to resample."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if samples <= 0 or data.size == 1:
        mean = float(data.mean())
        return (mean, mean)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))
