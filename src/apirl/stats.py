"""The statistics of evaluation, calibration and the reward model, on scipy and scikit-learn.

- `bootstrap_ci` / `paired_bootstrap`: `scipy.stats.bootstrap` with the percentile method, the method the code
  before it used. BCa would correct for skew, but it is undefined (nan, with a warning) where the bootstrap
  distribution is degenerate, which is common here: a constant paired difference, or a 0/1 metric that no
  question changes. A percentile interval of such data is the point, as it should be. Seeded: the seed is the
  resampler's `rng`, so the same values give the same interval. scipy draws the same indices from the same
  generator as the hand-written code before it did, so the bounds are unchanged up to rounding (1e-16).
- `mcnemar_exact`: the two-sided exact binomial test (`scipy.stats.binomtest`, p = 1/2) on the discordant pairs.
- `wilson_interval`: `binomtest(k, n).proportion_ci(method="wilson")`.
- `auc`: `sklearn.metrics.roc_auc_score`, the Mann-Whitney AUC (ties count half).
- `win_rate`: hand-written; it pairs by position, which no library function does (see its docstring).

scipy.stats and sklearn.metrics take seconds to import, so each function imports what it uses: importing this
module (every evaluation, calibration and report module does) costs nothing until a statistic is computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bootstrap_ci(values: Sequence[float] | np.ndarray, *, samples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; (mean, mean) when there is nothing to resample (one value, or
    `samples` <= 0), (nan, nan) for no values."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (math.nan, math.nan)
    if samples <= 0 or data.size == 1:
        mean = float(data.mean())
        return (mean, mean)
    from scipy.stats import bootstrap

    result = bootstrap((data,), np.mean, n_resamples=samples, confidence_level=level, method="percentile",
                       vectorized=True, rng=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def paired_bootstrap(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, samples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean(b - a), low, high): the bootstrap interval of the per-question differences' mean. Resampling the
    differences resamples the questions jointly for both models (scipy's `paired=True`, in one sample)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    delta = b - a
    mean = float(delta.mean()) if delta.size else math.nan
    return (mean, *bootstrap_ci(delta, samples=samples, seed=seed, level=level))


def mcnemar_exact(better: int, worse: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" each discordant question is a fair coin. With few
    discordant questions the bootstrap interval of a 0/1 difference is too narrow (4 gained, 0 lost: every
    resample is >= 0); this test is not (p = 0.125). 1.0 when no question is discordant."""
    n = better + worse
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(better, n, p=0.5).pvalue)


def wilson_interval(rate: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (95% by default). The eval files give executability as a bare
    rate of n (ok / n), so the successes are round(rate * n); unlike rate ± z·SE this interval stays inside
    [0, 1] and keeps its width at 0% and 100%, which small models' executability often is. (nan, nan) when n
    is 0."""
    if n <= 0:
        return (math.nan, math.nan)
    from scipy.stats import binomtest

    interval = binomtest(round(rate * n), n).proportion_ci(confidence_level=level, method="wilson")
    return (float(interval.low), float(interval.high))


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """The Mann-Whitney AUC: P(positive > negative) + P(positive == negative) / 2 over all pairs; None when
    either side is empty."""
    if len(positives) == 0 or len(negatives) == 0:
        return None
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    scores = np.concatenate([np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)])
    return float(roc_auc_score(labels, scores))


def win_rate(better: Sequence[float], worse: Sequence[float]) -> float | None:
    """The share of pairs (better[i], worse[i]) where the first scores higher, ties counting half; None when
    there is no pair. Hand-written: it compares each item with its own partner only, where the AUC
    (`roc_auc_score`) compares it with every item of the other side, a different number once the pairing matters
    (tests/test_stats.py: [1, 3] vs [2, 0] is 0.5 paired, 0.75 as AUC)."""
    if len(better) != len(worse):
        raise ValueError(f"paired samples differ in length: {len(better)} vs {len(worse)}")
    if len(better) == 0:
        return None
    signs = np.sign(np.asarray(better, dtype=float) - np.asarray(worse, dtype=float))
    return float(np.mean((signs + 1) / 2))
