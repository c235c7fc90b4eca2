"""Small-sample statistics for the canary gates (pure Python: the gates must not need SciPy).

Every gate asks "is the evidence strong enough?", not just "is the point estimate fine?": with a 10 % canary
the candidate sees few requests, and promoting on noise is the failure we must not have.
"""

import math

# One-sided 95 % normal quantile: the gates test one direction (candidate worse than stable).
Z_ONE_SIDED_95 = 1.6448536269514722


def proportion_diff_lower_bound(
    success_a: float, n_a: float, success_b: float, n_b: float, z: float
) -> float:
    """Lower confidence bound of p_a - p_b (Wald with a +1/+2 Agresti-Caffo correction for small counts)."""
    if n_a <= 0 or n_b <= 0:
        raise ValueError("both samples need at least one observation")
    pa = (success_a + 1) / (n_a + 2)
    pb = (success_b + 1) / (n_b + 2)
    se = math.sqrt(pa * (1 - pa) / (n_a + 2) + pb * (1 - pb) / (n_b + 2))
    return (pa - pb) - z * se


def proportion_diff_upper_bound(
    success_a: float, n_a: float, success_b: float, n_b: float, z: float
) -> float:
    """Upper confidence bound of p_a - p_b, same correction as the lower bound."""
    return -proportion_diff_lower_bound(success_b, n_b, success_a, n_a, z)


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
