"""apirl.stats by hand: the bootstrap intervals (seeded, the paired one's narrowing), the exact McNemar test, the
Wilson interval against textbook bounds, the AUC with ties, and the paired win rate where it is not the AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apirl.stats import auc, bootstrap_ci, mcnemar_exact, paired_bootstrap, wilson_interval, win_rate


def test_bootstrap_ci_contains_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(3).random(40)
    low, high = bootstrap_ci(values, seed=7)
    assert low < values.mean() < high and high - low < 0.5
    assert bootstrap_ci(values, seed=7) == (low, high)  # the seed fixes the resamples
    assert bootstrap_ci(list(values), seed=7) == (low, high)  # a list is the same data
    assert bootstrap_ci(values, seed=8) != (low, high)
    # A wider level gives a wider interval from the same resamples.
    wide_low, wide_high = bootstrap_ci(values, seed=7, level=0.99)
    assert wide_low <= low and high <= wide_high
    # Nothing to resample: one value, or no resamples asked for; no value at all is (nan, nan).
    assert bootstrap_ci([0.25]) == (0.25, 0.25)
    assert bootstrap_ci([0.0, 1.0], samples=0) == (0.5, 0.5)
    assert all(math.isnan(bound) for bound in bootstrap_ci([]))


def test_paired_bootstrap_by_hand() -> None:
    # A constant difference has no spread: every resample's mean difference is 0.5 (a percentile interval; BCa
    # would be nan here).
    assert paired_bootstrap(np.zeros(4), np.full(4, 0.5)) == (0.5, 0.5, 0.5)
    # One question: nothing to resample.
    assert paired_bootstrap(np.array([1.0]), np.array([0.0])) == (-1.0, -1.0, -1.0)
    # Differences (0, 1): each resample of two is a mean of 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% quantiles of many resamples are exactly 0 and 1, and the estimate is 0.5.
    diff, low, high = paired_bootstrap(np.array([0.0, 0.0]), np.array([0.0, 1.0]), samples=4000, seed=1)
    assert (diff, low, high) == (0.5, 0.0, 1.0)
    # The pairing is what narrows it: B = A + 0.1 on noisy A gives the point interval 0.1, which two unpaired
    # intervals of width ~0.5 each would never show.
    a = np.random.default_rng(0).random(50)
    diff, low, high = paired_bootstrap(a, a + 0.1)
    assert diff == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap(np.zeros(2), np.zeros(3))
    assert all(np.isnan(v) for v in paired_bootstrap(np.zeros(0), np.zeros(0)))


def test_mcnemar_exact_by_hand() -> None:
    # 1 vs 6: P(at most 1 of 7 coins one way) = (1 + 7) / 128 = 1/16, two-sided 1/8.
    assert mcnemar_exact(1, 6) == mcnemar_exact(6, 1) == 0.125
    # 4 gained, 0 lost: P(all 4 coins one way) = 1/16, two-sided 1/8, although no bootstrap resample is below 0.
    assert mcnemar_exact(4, 0) == mcnemar_exact(0, 4) == 0.125
    # 6 vs 14: 2 * sum_{k<=6} C(20, k) / 2^20 = 2 * 60,460 / 1,048,576 = 0.115318...
    assert mcnemar_exact(6, 14) == pytest.approx(2 * 60460 / 2 ** 20)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 3) == 1.0  # the cap: 2 * 42/64 > 1
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    assert isinstance(mcnemar_exact(2, 5), float)


def test_wilson_interval_by_hand() -> None:
    z2 = 1.959963984540054 ** 2  # 3.841459
    # 0 of 10: the textbook closed form, lower bound 0 and upper z²/(n + z²) = 3.841459 / 13.841459 = 0.277533;
    # 10 of 10 mirrors it, n/(n + z²) = 0.722467 to 1.
    low, high = wilson_interval(0.0, 10)
    assert low == 0.0 and high == pytest.approx(z2 / (10 + z2)) and high == pytest.approx(0.277533, abs=1e-6)
    low, high = wilson_interval(1.0, 10)
    assert high == 1.0 and low == pytest.approx(10 / (10 + z2)) and low == pytest.approx(0.722467, abs=1e-6)
    # 5 of 10: centre 0.5, half-width z·sqrt(0.025 + z²/400) / (1 + z²/10) = 1.959964 · 0.186021 / 1.384146
    # = 0.263407, so [0.236593, 0.763407] (the textbook value for 5/10).
    low, high = wilson_interval(0.5, 10)
    assert low == pytest.approx(0.236593, abs=1e-6) and high == pytest.approx(0.763407, abs=1e-6)
    # 4 of 40 and 0 of 40, as the report shows them: [4.0, 23.1] and [0.0, 8.8] percent.
    assert [round(100 * bound, 1) for bound in wilson_interval(0.1, 40)] == [4.0, 23.1]
    assert [round(100 * bound, 1) for bound in wilson_interval(0.0, 40)] == [0.0, 8.8]
    assert all(math.isnan(bound) for bound in wilson_interval(0.0, 0))


def test_auc_is_the_mann_whitney_probability_with_ties_counting_half() -> None:
    # Pairs (pos, neg): (.9,.5) 1, (.9,.1) 1, (.5,.5) 1/2, (.5,.1) 1, (.5,.5) 1/2, (.5,.1) 1 -> 5/6.
    assert auc([0.9, 0.5, 0.5], [0.5, 0.1]) == pytest.approx(5 / 6)
    assert auc([3, 4], [1, 2]) == 1.0  # perfectly separated
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 1], [1]) == 0.5  # all tied: each pair counts half
    assert auc([2, 1], [1]) == 0.75  # one win, one tie
    assert auc([], [1.0]) is None and auc([1.0], []) is None
    assert isinstance(auc([1.0], [0.0]), float)


def test_win_rate_pairs_by_position_which_the_auc_does_not() -> None:
    assert win_rate([], []) is None and win_rate([1.0, 1.0], [0.0, 1.0]) == 0.75  # a win and a tie
    assert win_rate([2.0, 0.0], [1.0, 3.0]) == 0.5
    # Why it is not roc_auc_score: 1 loses to its partner 2 and 3 beats its partner 0, so paired it is 1/2; over all
    # cross pairs 1 also beats 0 and 3 beats 2, so the AUC is 3/4.
    assert win_rate([1.0, 3.0], [2.0, 0.0]) == 0.5
    assert auc([1.0, 3.0], [2.0, 0.0]) == 0.75
    with pytest.raises(ValueError, match="differ in length"):
        win_rate([1.0], [0.0, 1.0])
