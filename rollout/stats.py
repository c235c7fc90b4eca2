"""Small-sample statistics for the canary gates (pure Python: the gates must not need SciPy).

Every gate asks "does the evidence rule this out?", never "is the point estimate fine?": a 10 % canary sees a few
hundred requests and a handful of errors, where normal approximations of a proportion are badly wrong. So the
bounds here are score (Wilson) intervals with a continuity correction, which keep their coverage down to zero
counts, and rate ratios are bounded through the conditional binomial (the share of all errors that fell on the
candidate), which does not need stable's error rate to be known. All are closed forms: bench/bench_gates.py
calls them hundreds of thousands of times.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

# One-sided 95 % normal quantile.
Z_ONE_SIDED_95 = 1.6448536269514722


def z_for(alpha: float) -> float:
    """The one-sided normal quantile for a false-decision probability alpha (0 < alpha < 1)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    return NormalDist().inv_cdf(1 - alpha)


# Up to this many events (or non-events) the bounds are exact; beyond it the score interval is accurate.
EXACT_BELOW = 25


def _binomial_cdf(k: int, n: float, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), k small (the sum runs over k + 1 terms; n may be fractional)."""
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0 if k < n else 1.0
    log_term = n * math.log1p(-p)
    odds = p / (1 - p)
    total, term = 0.0, math.exp(log_term)
    for i in range(k + 1):
        total += term
        term *= (n - i) / (i + 1) * odds
    return min(1.0, total)


def _solve(f, target: float, decreasing: bool) -> float:
    """The p in [0, 1] where the monotone f(p) crosses target, by bisection (45 halvings: 3e-14)."""
    low, high = 0.0, 1.0
    for _ in range(45):
        mid = (low + high) / 2
        if (f(mid) > target) == decreasing:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@functools.lru_cache(maxsize=1 << 18)
def _exact_bounds(k: int, n: float, alpha: float) -> tuple[float, float]:
    """Clopper-Pearson one-sided bounds for k events in n, each holding with confidence 1 - alpha."""
    lower = 0.0 if k <= 0 else _solve(lambda p: 1 - _binomial_cdf(k - 1, n, p), alpha, decreasing=False)
    upper = 1.0 if k >= n else _solve(lambda p: _binomial_cdf(k, n, p), alpha, decreasing=True)
    return lower, upper


def wilson_bounds(successes: float, n: float, z: float) -> tuple[float, float]:
    """(lower, upper) one-sided bounds of a proportion, each holding with confidence Phi(z).

    Exact (Clopper-Pearson) when fewer than EXACT_BELOW events or non-events were seen, where the score interval
    is too optimistic (its lower bound lies above p far more often than alpha at one event in thousands);
    otherwise the Wilson score interval with continuity correction (Newcombe 1998, method 4). n = 0: (0, 1).
    """
    if n <= 0:
        return 0.0, 1.0
    k = min(max(successes, 0.0), n)
    if k < EXACT_BELOW:
        return _exact_bounds(round(k), n, 1 - NormalDist().cdf(z))
    if n - k < EXACT_BELOW:
        low, high = _exact_bounds(round(n - k), n, 1 - NormalDist().cdf(z))
        return 1 - high, 1 - low
    p = k / n
    z2 = z * z
    denominator = 2 * (n + z2)
    lower = 2 * n * p + z2 - 1 - z * math.sqrt(max(0.0, z2 - 2 - 1 / n + 4 * p * (n * (1 - p) + 1)))
    upper = 2 * n * p + z2 + 1 + z * math.sqrt(max(0.0, z2 + 2 - 1 / n + 4 * p * (n * (1 - p) - 1)))
    return max(0.0, lower / denominator), min(1.0, upper / denominator)


def proportion_diff_bounds(
    success_a: float, n_a: float, success_b: float, n_b: float, z: float
) -> tuple[float, float]:
    """(lower, upper) bounds of p_a - p_b from the two Wilson intervals (Newcombe's hybrid score method 10)."""
    pa = success_a / n_a if n_a > 0 else 0.0
    pb = success_b / n_b if n_b > 0 else 0.0
    la, ua = wilson_bounds(success_a, n_a, z)
    lb, ub = wilson_bounds(success_b, n_b, z)
    difference = pa - pb
    lower = difference - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    upper = difference + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return max(-1.0, lower), min(1.0, upper)


def rate_ratio_bounds(
    events_a: float, n_a: float, events_b: float, n_b: float, z: float
) -> tuple[float, float]:
    """(lower, upper) bounds of the ratio of event rates (events_a/n_a) / (events_b/n_b).

    Given the total number of events, the share that fell on side a is binomial with
    pi = r n_a / (r n_a + n_b), where r is the rate ratio: bound pi, then map it back to r. Exact in the Poisson
    limit (rare events) and conservative for binomial ones. No events: nothing is known, (0, inf).
    """
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both samples need at least one observation")
    total = events_a + events_b
    if total <= 0:
        return 0.0, math.inf
    low_share, high_share = wilson_bounds(events_a, total, z)
    scale = n_b / n_a

    def ratio(share: float) -> float:
        return math.inf if share >= 1 else share / (1 - share) * scale

    return ratio(low_share), ratio(high_share)


def _regularized_lower_gamma(s: float, x: float) -> float:
    """P(s, x) by its power series (converges for every x; we only call it with moderate x)."""
    if x <= 0:
        return 0.0
    term = 1.0 / s
    total = term
    k = 1
    while k < 10_000:
        term *= x / (s + k)
        total += term
        if term < total * 1e-15:
            break
        k += 1
    return min(1.0, math.exp(-x + s * math.log(x) - math.lgamma(s)) * total)


def chi2_sf(statistic: float, dof: int) -> float:
    """Survival function of the chi-square distribution: P(X >= statistic)."""
    if dof <= 0:
        raise ValueError("degrees of freedom must be positive")
    if statistic <= 0:
        return 1.0
    if statistic > 10 * dof + 200:
        # The series loses precision far in the tail, where the answer is 0 for every threshold we use.
        return 0.0
    return max(0.0, 1.0 - _regularized_lower_gamma(dof / 2.0, statistic / 2.0))


def homogeneity_test(counts_a: dict[str, float], counts_b: dict[str, float]) -> tuple[float, int, float]:
    """Chi-square test that two categorical samples come from one distribution: (statistic, dof, p-value).

    Categories seen in neither sample are dropped; with fewer than two categories there is nothing to test.
    """
    categories = sorted(
        k for k in set(counts_a) | set(counts_b) if counts_a.get(k, 0) + counts_b.get(k, 0) > 0
    )
    n_a = sum(counts_a.get(k, 0) for k in categories)
    n_b = sum(counts_b.get(k, 0) for k in categories)
    if len(categories) < 2 or n_a <= 0 or n_b <= 0:
        return 0.0, 0, 1.0
    total = n_a + n_b
    statistic = 0.0
    for k in categories:
        column = counts_a.get(k, 0) + counts_b.get(k, 0)
        for observed, n in ((counts_a.get(k, 0), n_a), (counts_b.get(k, 0), n_b)):
            expected = n * column / total
            statistic += (observed - expected) ** 2 / expected
    dof = len(categories) - 1
    return statistic, dof, chi2_sf(statistic, dof)


def total_variation(counts_a: dict[str, float], counts_b: dict[str, float]) -> float:
    """Total variation distance between the two empirical distributions (0 = same, 1 = disjoint)."""
    n_a = sum(counts_a.values())
    n_b = sum(counts_b.values())
    if n_a <= 0 or n_b <= 0:
        return 0.0
    keys = set(counts_a) | set(counts_b)
    return 0.5 * sum(abs(counts_a.get(k, 0) / n_a - counts_b.get(k, 0) / n_b) for k in keys)
