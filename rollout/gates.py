"""The canary decision: candidate vs stable over one analysis window, gate by gate, with reasons.

Pure logic over counts already fetched from Prometheus (see measure.py), so both backends share it and it can
be tested exhaustively without servers. Each gate has three answers: **pass** (the data rule out that the
candidate is worse than its margin), **fail** (the data show it is worse than its margin) and **inconclusive**
(not enough evidence either way: the engine lets the window grow up to its cap, then rolls back). A gate never
passes on too little data. Margins are relative to what stable measures in the same window, with an absolute
floor so a near-perfect stable does not demand perfection. bench/bench_gates.py measures how often these
decisions are wrong at the shipped defaults and traffic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from rollout import stats

VERDICTS = ("pass", "fail", "inconclusive")


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Limits of the canary gates. The inventory's `rollout_gate_thresholds` overrides single fields; the
    defaults here are the shipped ones (docs/rollout.md, "Canary gates", explains each and its bench
    numbers)."""

    # No verdict (inconclusive) before each side has this much evidence.
    min_requests: int = 100
    min_feedback: int = 100
    # 5xx share of /predict: acceptable up to max(ratio x stable's share, floor).
    max_error_rate_ratio: float = 2.0
    error_rate_floor: float = 0.01
    # Latency: the candidate's latency_quantile may be up to this x stable's (rounded down to a bucket
    # boundary).
    max_latency_ratio: float = 1.5
    latency_quantile: float = 0.9
    # Fail-only SLO check: the data show more than 1 % of the candidate's requests slower than this.
    max_p99_latency_ms: float = 500.0
    # Misclassified share of feedback: acceptable up to max(ratio x stable's share, floor).
    max_misclassification_ratio: float = 2.0
    misclassification_floor: float = 0.02
    max_class_shift_tvd: float = 0.2
    class_shift_alpha: float = 0.001
    # Per decision and gate: chance that a candidate worse than its margin passes / one within it fails.
    alpha_promote: float = 0.05
    alpha_reject: float = 0.005

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Thresholds:
        known = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(
                f"unknown gate threshold(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        converted = {}
        for key, value in values.items():
            number = float(value)
            if not math.isfinite(number) or number < 0:
                raise ValueError(f"gate threshold {key} must be a finite number >= 0, got {value!r}")
            converted[key] = int(number) if known[key] == "int" else number
        thresholds = cls(**converted)
        for name in ("max_error_rate_ratio", "max_latency_ratio", "max_misclassification_ratio"):
            if getattr(thresholds, name) < 1:
                raise ValueError(f"{name} below 1 would reject a candidate exactly as good as stable")
        for name in ("error_rate_floor", "misclassification_floor", "latency_quantile"):
            if not 0 <= getattr(thresholds, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1)")
        for name in ("class_shift_alpha", "alpha_promote", "alpha_reject"):
            if not 0 < getattr(thresholds, name) < 0.5:
                raise ValueError(f"{name} must lie strictly between 0 and 0.5")
        if thresholds.latency_quantile <= 0:
            raise ValueError("latency_quantile must lie strictly between 0 and 1")
        return thresholds


@dataclasses.dataclass(frozen=True)
class Side:
    """What one environment served during the window (counts are increases over the window).

    latency_buckets: cumulative /predict latency histogram, upper bound in ms (math.inf for +Inf) -> requests
    answered within it, exactly as Prometheus stores `_bucket{le=...}`. p99_latency_ms is for the report only.
    """

    environment: str
    model_version: str
    requests: float
    errors: float
    p99_latency_ms: float | None
    feedback: float
    feedback_correct: float
    predictions: Mapping[str, float]
    latency_buckets: Mapping[float, float] = dataclasses.field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def accuracy(self) -> float | None:
        return self.feedback_correct / self.feedback if self.feedback > 0 else None

    @property
    def misclassified(self) -> float:
        return max(0.0, self.feedback - self.feedback_correct)


@dataclasses.dataclass(frozen=True)
class GateResult:
    name: str
    verdict: str
    measured: dict[str, Any]
    threshold: dict[str, Any]
    reason: str
    # False while a side still lacks the gate's minimum evidence (min_requests / min_feedback).
    enough_data: bool = True

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"


@dataclasses.dataclass(frozen=True)
class Decision:
    verdict: str
    gates: list[GateResult]

    @property
    def promote(self) -> bool:
        return self.verdict == "pass"

    @property
    def reasons(self) -> list[str]:
        """Why the decision is not a pass: every failed gate, then every inconclusive one."""
        ordered = [g for g in self.gates if g.verdict == "fail"] + [
            g for g in self.gates if g.verdict == "inconclusive"
        ]
        return [f"{g.name}: {g.reason}" for g in ordered]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "promote": self.promote,
            "reasons": self.reasons,
            "gates": [dict(dataclasses.asdict(g), passed=g.passed) for g in self.gates],
        }


def _r(value: float | None, digits: int = 4) -> float | None:
    if value is None or math.isinf(value):
        return value
    return round(value, digits)


def _too_few(
    name: str, what: str, have: dict[str, float], need: int, threshold: dict[str, Any]
) -> GateResult | None:
    short = {side: n for side, n in have.items() if n < need}
    if not short:
        return None
    detail = ", ".join(f"{side} has {n:.0f}" for side, n in short.items())
    return GateResult(
        name,
        "inconclusive",
        {f"{side}_{what}": round(n) for side, n in have.items()},
        threshold,
        f"not enough data yet: need >= {need} {what} per side, {detail}",
        enough_data=False,
    )


def _rate_gate(
    what: str,
    bad: tuple[float, float],
    good: tuple[float, float],
    ratio: float,
    floor: float,
    t: Thresholds,
) -> tuple[str, dict[str, Any], str]:
    """Shared by the error-rate and the accuracy gate: is the candidate's rate of bad events acceptable, i.e.
    at most max(ratio x stable's rate, floor)?

    Pass when either bound rules the unacceptable out (each at alpha_promote / 2, so together at most
    alpha_promote); fail when both show it (each at alpha_reject).
    """
    (bad_c, n_c), (bad_s, n_s) = bad, good
    z_pass = stats.z_for(t.alpha_promote / 2)
    z_fail = stats.z_for(t.alpha_reject)
    ratio_upper = stats.rate_ratio_bounds(bad_c, n_c, bad_s, n_s, z_pass)[1]
    ratio_lower = stats.rate_ratio_bounds(bad_c, n_c, bad_s, n_s, z_fail)[0]
    rate_upper = stats.wilson_bounds(bad_c, n_c, z_pass)[1]
    rate_lower = stats.wilson_bounds(bad_c, n_c, z_fail)[0]
    measured = {
        "candidate": _r(bad_c / n_c),
        "stable": _r(bad_s / n_s),
        "candidate_count": round(bad_c),
        "stable_count": round(bad_s),
        "candidate_n": round(n_c),
        "stable_n": round(n_s),
        "ratio_upper_bound": _r(ratio_upper, 3),
        "ratio_lower_bound": _r(ratio_lower, 3),
        "candidate_upper_bound": _r(rate_upper),
        "candidate_lower_bound": _r(rate_lower),
    }
    summary = f"candidate {what} {bad_c / n_c:.4f} ({bad_c:.0f}/{n_c:.0f}) vs stable {bad_s / n_s:.4f}"
    if ratio_upper <= ratio or rate_upper <= floor:
        how = (
            f"at most {ratio_upper:.2f}x stable's (bound) <= {ratio}x"
            if ratio_upper <= ratio
            else f"at most {rate_upper:.4f} (bound) <= floor {floor}"
        )
        return "pass", measured, f"{summary}: {how}"
    if ratio_lower > ratio and rate_lower > floor:
        return (
            "fail",
            measured,
            f"{summary}: at least {ratio_lower:.2f}x stable's (bound) > {ratio}x "
            f"and at least {rate_lower:.4f} > floor {floor}",
        )
    return (
        "inconclusive",
        measured,
        f"{summary}: between {ratio_lower:.2f}x and {_r(ratio_upper, 2)}x stable's, the margin {ratio}x "
        f"(or floor {floor}) is neither ruled out nor shown",
    )


def error_rate_gate(candidate: Side, stable: Side, t: Thresholds) -> GateResult:
    threshold = {
        "max_ratio_to_stable": t.max_error_rate_ratio,
        "floor": t.error_rate_floor,
        "min_requests": t.min_requests,
    }
    short = _too_few(
        "error_rate",
        "requests",
        {"candidate": candidate.requests, "stable": stable.requests},
        t.min_requests,
        threshold,
    )
    if short:
        return short
    verdict, measured, reason = _rate_gate(
        "5xx rate",
        (candidate.errors, candidate.requests),
        (stable.errors, stable.requests),
        t.max_error_rate_ratio,
        t.error_rate_floor,
        t,
    )
    return GateResult("error_rate", verdict, measured, threshold, reason)


def _cumulative(buckets: Mapping[float, float]) -> dict[float, float]:
    # A counter reset can leave a window's cumulative counts non-monotone: never let a bucket exceed the next.
    out: dict[float, float] = {}
    running = math.inf
    for bound in sorted(buckets, reverse=True):
        running = min(running, max(0.0, buckets[bound]))
        out[bound] = running
    return dict(sorted(out.items()))


def latency_gate(candidate: Side, stable: Side, t: Thresholds) -> GateResult:
    """Is the candidate's latency_quantile at most max_latency_ratio x stable's?

    From the histograms of both sides: b = the bucket boundary where stable's quantile lies, b' = the largest
    boundary <= ratio x b. If the candidate were ratio x slower than stable (or worse), its share of requests
    above b' would be at least stable's share above b; pass when the data rule that out, fail when they show
    it. Both shares are measured, so the noise of both sides is in the bounds. Plus a fail-only SLO check:
    fail when the data show more than 1 % of the candidate's requests slower than max_p99_latency_ms (proving
    the opposite needs hundreds of requests; the staging load test measures p99 itself).
    """
    threshold = {
        "quantile": t.latency_quantile,
        "max_ratio_to_stable": t.max_latency_ratio,
        "slo_p99_ms": t.max_p99_latency_ms,
        "min_requests": t.min_requests,
    }
    cand, stab = _cumulative(candidate.latency_buckets), _cumulative(stable.latency_buckets)
    n_c, n_s = cand.get(math.inf, 0.0), stab.get(math.inf, 0.0)
    short = _too_few(
        "latency", "latency samples", {"candidate": n_c, "stable": n_s}, t.min_requests, threshold
    )
    if short:
        return short
    bounds = sorted(b for b in set(cand) & set(stab) if math.isfinite(b))
    measured: dict[str, Any] = {
        "candidate_p99_ms": _r(candidate.p99_latency_ms, 1),
        "stable_p99_ms": _r(stable.p99_latency_ms, 1),
        "candidate_n": round(n_c),
        "stable_n": round(n_s),
    }
    z_pass, z_fail = stats.z_for(t.alpha_promote), stats.z_for(t.alpha_reject)

    # Fail-only SLO check, counting only requests certainly slower than the SLO (the next boundary up).
    above_slo = [b for b in bounds if b >= t.max_p99_latency_ms]
    if above_slo:
        slow = n_c - cand[above_slo[0]]
        slow_lower = stats.wilson_bounds(slow, n_c, z_fail)[0]
        measured.update({"slower_than_slo": round(slow), "slower_than_slo_lower_bound": _r(slow_lower)})
        if slow_lower > 0.01:
            return GateResult(
                "latency",
                "fail",
                measured,
                threshold,
                f"at least {slow_lower:.3f} of the candidate's requests (bound; {slow:.0f}/{n_c:.0f} seen) "
                f"took over {above_slo[0]:g} ms: its p99 is above the {t.max_p99_latency_ms:g} ms SLO",
            )

    quantile_bounds = [b for b in bounds if stab[b] >= t.latency_quantile * n_s]
    if not quantile_bounds:
        return GateResult(
            "latency",
            "inconclusive",
            measured,
            threshold,
            f"stable's p{t.latency_quantile * 100:g} lies beyond the largest histogram bucket: "
            "nothing to compare",
        )
    b = quantile_bounds[0]
    shifted = [x for x in bounds if x <= t.max_latency_ratio * b * (1 + 1e-9)]
    b_cand = shifted[-1] if shifted else None
    # Without a boundary at or below ratio x b every candidate request counts as slower: it cannot pass.
    slow_c = n_c - cand[b_cand] if b_cand is not None else n_c
    slow_s = n_s - stab[b]
    upper = stats.proportion_diff_bounds(slow_c, n_c, slow_s, n_s, z_pass)[1]
    lower = stats.proportion_diff_bounds(slow_c, n_c, slow_s, n_s, z_fail)[0]
    measured.update(
        {
            "stable_quantile_bucket_ms": b,
            "candidate_limit_bucket_ms": b_cand,
            "candidate_share_above_limit": _r(slow_c / n_c),
            "stable_share_above_quantile": _r(slow_s / n_s),
            "difference_upper_bound": _r(upper),
            "difference_lower_bound": _r(lower),
        }
    )
    q = f"p{t.latency_quantile * 100:g}"
    summary = (
        f"{slow_c / n_c:.3f} of the candidate's requests took over {b_cand} ms "
        f"vs {slow_s / n_s:.3f} of stable's over {b:g} ms (stable's {q} bucket)"
    )
    if upper < 0:
        return GateResult(
            "latency", "pass", measured, threshold, f"{summary}: {q} is below {t.max_latency_ratio}x stable's"
        )
    if lower > 0:
        return GateResult(
            "latency", "fail", measured, threshold, f"{summary}: {q} is above {t.max_latency_ratio}x stable's"
        )
    return GateResult(
        "latency",
        "inconclusive",
        measured,
        threshold,
        f"{summary}: cannot tell yet whether {q} is within {t.max_latency_ratio}x stable's",
    )


def accuracy_gate(candidate: Side, stable: Side, t: Thresholds) -> GateResult:
    threshold = {
        "max_misclassification_ratio": t.max_misclassification_ratio,
        "misclassification_floor": t.misclassification_floor,
        "min_feedback": t.min_feedback,
    }
    short = _too_few(
        "online_accuracy",
        "feedback",
        {"candidate": candidate.feedback, "stable": stable.feedback},
        t.min_feedback,
        threshold,
    )
    if short:
        return short
    # Non-inferiority on the error side: 0.96 vs 0.986 is 2.9x the misclassifications, not "0.026 worse".
    verdict, measured, reason = _rate_gate(
        "misclassification rate",
        (candidate.misclassified, candidate.feedback),
        (stable.misclassified, stable.feedback),
        t.max_misclassification_ratio,
        t.misclassification_floor,
        t,
    )
    measured.update({"candidate_accuracy": _r(candidate.accuracy), "stable_accuracy": _r(stable.accuracy)})
    return GateResult("online_accuracy", verdict, measured, threshold, reason)


def class_shift_gate(candidate: Side, stable: Side, t: Thresholds) -> GateResult:
    threshold = {
        "max_tvd": t.max_class_shift_tvd,
        "alpha": t.class_shift_alpha,
        "min_predictions": t.min_requests,
    }
    have = {"candidate": sum(candidate.predictions.values()), "stable": sum(stable.predictions.values())}
    short = _too_few("class_shift", "predictions", have, t.min_requests, threshold)
    if short:
        return short
    tvd = stats.total_variation(candidate.predictions, stable.predictions)
    statistic, dof, p_value = stats.homogeneity_test(candidate.predictions, stable.predictions)
    measured = {"tvd": _r(tvd), "chi2": _r(statistic, 2), "dof": dof, "p_value": _r(p_value, 6)}
    # A shift must be both statistically real and large enough to matter.
    shifted = p_value < t.class_shift_alpha and tvd > t.max_class_shift_tvd
    if not shifted:
        reason = f"TVD {tvd:.3f} (p={p_value:.2g}): no significant shift larger than {t.max_class_shift_tvd}"
        return GateResult("class_shift", "pass", measured, threshold, reason)
    reason = (
        f"predicted-class distribution moved by TVD {tvd:.3f} > {t.max_class_shift_tvd} (p={p_value:.2g})"
    )
    better = _shown_more_accurate(candidate, stable, t)
    if better is None:
        return GateResult("class_shift", "fail", measured, threshold, reason)
    # Where stable is wrong (inputs it never learned), a candidate that is right predicts other classes: the
    # shift is stable's errors corrected, which the labels show, not a collapse.
    measured["misclassification_ratio_upper_bound"] = _r(better, 3)
    return GateResult(
        "class_shift",
        "pass",
        measured,
        threshold,
        f"{reason}, and the labelled feedback shows the candidate more accurate (misclassifications at most "
        f"{better:.2f}x stable's): it corrects stable's errors",
    )


def _shown_more_accurate(candidate: Side, stable: Side, t: Thresholds) -> float | None:
    """The bound (at alpha_reject: it overrules a fail) on the candidate's misclassification rate as a
    multiple of stable's, when that bound is below 1; None when the feedback does not show that."""
    if min(candidate.feedback, stable.feedback) < t.min_feedback:
        return None
    _, upper = stats.rate_ratio_bounds(
        candidate.misclassified,
        candidate.feedback,
        stable.misclassified,
        stable.feedback,
        stats.z_for(t.alpha_reject),
    )
    return upper if upper < 1 else None


GATES = (error_rate_gate, latency_gate, accuracy_gate, class_shift_gate)


def combine(verdicts: list[str]) -> str:
    """Any fail fails; otherwise any inconclusive leaves the decision open; only all-pass promotes."""
    if "fail" in verdicts:
        return "fail"
    if "inconclusive" in verdicts:
        return "inconclusive"
    return "pass"


def decide(candidate: Side, stable: Side, thresholds: Thresholds) -> Decision:
    results = [gate(candidate, stable, thresholds) for gate in GATES]
    return Decision(combine([r.verdict for r in results]), results)


def step_verdict(decision: Decision, mode: str) -> str:
    """The answer of an analysis step in `mode` (rollout/strategy.py MODES): the engine and bench_gates both
    judge a step through this."""
    return guard(decision) if mode == "guard" else decision.verdict


def guard(decision: Decision) -> str:
    """The answer of a guard step (strategy `mode: guard`), which only stops a candidate the data already
    show worse: fail when a gate fails; inconclusive while a gate lacks its minimum evidence; otherwise pass,
    meaning "not shown worse". A small first weight cannot show an identical model within its margins in
    minutes (docs/rollout.md), so it guards; the strategy's last analysis before the promotion is always a
    full verdict, where every gate must pass."""
    if decision.verdict == "fail":
        return "fail"
    if not all(g.enough_data for g in decision.gates):
        return "inconclusive"
    return "pass"
