"""The canary decision: candidate vs stable over one analysis window, gate by gate, with reasons.

Pure logic over counts already fetched from Prometheus (see measure.py), so both backends share it and it can
be tested exhaustively without servers. A gate never passes on too little data: an unknown is a rejection.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from rollout import stats


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Limits of the canary gates; every field is an Ansible variable `rollout_gate_<field>`."""

    min_requests: int = 150
    min_feedback: int = 100
    max_error_rate_increase: float = 0.02
    max_p99_latency_ms: float = 500.0
    max_p99_latency_ratio: float = 1.5
    p99_latency_slack_ms: float = 50.0
    max_accuracy_drop: float = 0.05
    max_class_shift_tvd: float = 0.2
    class_shift_alpha: float = 0.001
    z: float = stats.Z_ONE_SIDED_95

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
        if thresholds.max_p99_latency_ratio < 1:
            raise ValueError(
                "max_p99_latency_ratio below 1 would reject a candidate exactly as fast as stable"
            )
        if not 0 < thresholds.class_shift_alpha < 1:
            raise ValueError("class_shift_alpha must lie strictly between 0 and 1")
        return thresholds


@dataclasses.dataclass(frozen=True)
class Side:
    """What one environment served during the window (counts are increases over the window)."""

    environment: str
    model_version: str
    requests: float
    errors: float
    p99_latency_ms: float | None
    feedback: float
    feedback_correct: float
    predictions: Mapping[str, float]

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    @property
    def accuracy(self) -> float | None:
        return self.feedback_correct / self.feedback if self.feedback > 0 else None


@dataclasses.dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    measured: dict[str, Any]
    threshold: dict[str, Any]
    reason: str


@dataclasses.dataclass(frozen=True)
class Decision:
    promote: bool
    gates: list[GateResult]

    @property
    def reasons(self) -> list[str]:
        return [f"{g.name}: {g.reason}" for g in self.gates if not g.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reasons": self.reasons,
            "gates": [dataclasses.asdict(g) for g in self.gates],
        }


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def _too_few(
    name: str, what: str, have: dict[str, float], need: int, threshold: dict[str, Any]
) -> GateResult | None:
    short = {side: n for side, n in have.items() if n < need}
    if not short:
        return None
    detail = ", ".join(f"{side} has {n:.0f}" for side, n in short.items())
    return GateResult(
        name,
        False,
        {f"{side}_{what}": round(n) for side, n in have.items()},
        threshold,
        f"insufficient data: need >= {need} {what} per side, {detail}",
    )


def error_rate_gate(candidate: Side, stable: Side, t: Thresholds) -> GateResult:
    threshold = {"max_increase_upper_bound": t.max_error_rate_increase, "min_requests": t.min_requests}
    short = _too_few(
        "error_rate",
        "requests",
        {"candidate": candidate.requests, "stable": stable.requests},
        t.min_requests,
        threshold,
    )
    if short:
        return short
    upper = stats.proportion_diff_upper_bound(
        candidate.errors, candidate.requests, stable.errors, stable.requests, t.z
    )
    measured = {
        "candidate": _r(candidate.error_rate),
        "stable": _r(stable.error_rate),
        "increase_upper_bound": _r(upper),
        "candidate_requests": round(candidate.requests),
        "stable_requests": round(stable.requests),
    }
    passed = upper <= t.max_error_rate_increase
    reason = (
        f"error-rate increase is at most {upper:.4f} (95% bound) <= {t.max_error_rate_increase}"
        if passed
        else f"candidate error rate {candidate.error_rate:.4f} vs stable {stable.error_rate:.4f}: increase could be "
        f"{upper:.4f} (95% bound) > {t.max_error_rate_increase}"
    )
    return GateResult("error_rate", passed, measured, threshold, reason)


def latency_gate(candidate: Side, stable: Side, t: Thresholds) -> GateResult:
    threshold = {
        "max_p99_ms": t.max_p99_latency_ms,
        "max_ratio_to_stable": t.max_p99_latency_ratio,
        "slack_ms": t.p99_latency_slack_ms,
        "min_requests": t.min_requests,
    }
    short = _too_few(
        "p99_latency",
        "requests",
        {"candidate": candidate.requests, "stable": stable.requests},
        t.min_requests,
        threshold,
    )
    if short:
        return short
    cand, stab = candidate.p99_latency_ms, stable.p99_latency_ms
    if cand is None or stab is None or math.isnan(cand) or math.isnan(stab):
        return GateResult(
            "p99_latency",
            False,
            {"candidate_ms": cand, "stable_ms": stab},
            threshold,
            "insufficient data: no latency histogram samples in the window",
        )
    limit = min(t.max_p99_latency_ms, stab * t.max_p99_latency_ratio + t.p99_latency_slack_ms)
    measured = {"candidate_ms": _r(cand, 1), "stable_ms": _r(stab, 1), "limit_ms": _r(limit, 1)}
    passed = cand <= limit
    reason = (
        f"p99 {cand:.1f} ms <= {limit:.1f} ms"
        if passed
        else f"candidate p99 {cand:.1f} ms > limit {limit:.1f} ms (SLO {t.max_p99_latency_ms} ms, "
        f"stable p99 {stab:.1f} ms x {t.max_p99_latency_ratio} + {t.p99_latency_slack_ms} ms)"
    )
    return GateResult("p99_latency", passed, measured, threshold, reason)


def accuracy_gate(candidate: Side, stable: Side, t: Thresholds) -> GateResult:
    threshold = {"max_drop_lower_bound": t.max_accuracy_drop, "min_feedback": t.min_feedback}
    short = _too_few(
        "online_accuracy",
        "feedback",
        {"candidate": candidate.feedback, "stable": stable.feedback},
        t.min_feedback,
        threshold,
    )
    if short:
        return short
    lower = stats.proportion_diff_lower_bound(
        candidate.feedback_correct, candidate.feedback, stable.feedback_correct, stable.feedback, t.z
    )
    measured = {
        "candidate": _r(candidate.accuracy),
        "stable": _r(stable.accuracy),
        "difference_lower_bound": _r(lower),
        "candidate_feedback": round(candidate.feedback),
        "stable_feedback": round(stable.feedback),
    }
    # Non-inferiority: promote only when the data rule out a drop larger than the margin.
    passed = lower >= -t.max_accuracy_drop
    reason = (
        f"accuracy drop is at most {-lower:.4f} (95% bound) <= {t.max_accuracy_drop}"
        if passed
        else f"candidate accuracy {candidate.accuracy:.4f} vs stable {stable.accuracy:.4f}: drop could be "
        f"{-lower:.4f} (95% bound) > {t.max_accuracy_drop}"
    )
    return GateResult("online_accuracy", passed, measured, threshold, reason)


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
    reason = (
        f"predicted-class distribution moved by TVD {tvd:.3f} > {t.max_class_shift_tvd} (p={p_value:.2g})"
        if shifted
        else f"TVD {tvd:.3f} (p={p_value:.2g}): no significant shift larger than {t.max_class_shift_tvd}"
    )
    return GateResult("class_shift", not shifted, measured, threshold, reason)


GATES = (error_rate_gate, latency_gate, accuracy_gate, class_shift_gate)


def decide(candidate: Side, stable: Side, thresholds: Thresholds) -> Decision:
    results = [gate(candidate, stable, thresholds) for gate in GATES]
    return Decision(all(r.passed for r in results), results)
