"""The canary decision logic and its statistics (pure functions: no servers)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollout import gates, stats
from rollout.gates import Side, Thresholds

CLASSES = [str(c) for c in range(10)]


def side(
    env="canary",
    version="v2",
    requests=400,
    errors=0,
    p99=40.0,
    feedback=1600,
    correct=None,
    predictions=None,
):
    correct = round(0.97 * feedback) if correct is None else correct
    predictions = predictions if predictions is not None else {c: requests * 8 / 10 for c in CLASSES}
    return Side(env, version, requests, errors, p99, feedback, correct, predictions)


def stable():
    return side("production", "v1", requests=3600, feedback=14400)


def test_a_candidate_like_stable_is_promoted():
    decision = gates.decide(side(), stable(), Thresholds())
    assert decision.promote, decision.reasons
    assert [g.name for g in decision.gates] == ["error_rate", "p99_latency", "online_accuracy", "class_shift"]


@pytest.mark.parametrize(
    ("candidate", "gate"),
    [
        (side(errors=40), "error_rate"),
        (side(p99=400.0), "p99_latency"),
        (side(p99=700.0), "p99_latency"),
        (side(correct=round(0.85 * 1600)), "online_accuracy"),
        (side(predictions={"1": 3000, "7": 200}), "class_shift"),
    ],
)
def test_each_fault_fails_its_gate(candidate, gate):
    decision = gates.decide(candidate, stable(), Thresholds())
    assert not decision.promote
    failed = [g.name for g in decision.gates if not g.passed]
    assert gate in failed
    assert any(r.startswith(gate) for r in decision.reasons)


def test_latency_limit_is_the_tighter_of_slo_and_ratio():
    t = Thresholds(max_p99_latency_ms=500, max_p99_latency_ratio=1.5, p99_latency_slack_ms=50)
    result = gates.latency_gate(side(p99=210.0), side("production", "v1", p99=100.0), t)
    assert not result.passed and result.measured["limit_ms"] == 200.0
    assert gates.latency_gate(side(p99=190.0), side("production", "v1", p99=100.0), t).passed


@pytest.mark.parametrize(
    "candidate",
    [
        side(requests=20, feedback=1600),
        side(feedback=10, correct=10),
        side(p99=None),
        side(p99=math.nan),
        side(requests=0, feedback=0, correct=0, predictions={}),
    ],
)
def test_too_little_data_never_promotes(candidate):
    decision = gates.decide(candidate, stable(), Thresholds())
    assert not decision.promote
    assert any("insufficient data" in r for r in decision.reasons)


def test_stable_side_needs_evidence_too():
    decision = gates.decide(
        side(), side("production", "v1", requests=10, feedback=10, correct=10), Thresholds()
    )
    assert not decision.promote


@settings(max_examples=300, deadline=None)
@given(
    requests=st.integers(0, 149),
    errors=st.integers(0, 149),
    feedback=st.integers(0, 5000),
)
def test_below_the_minimum_requests_no_candidate_is_promoted(requests, errors, feedback):
    candidate = side(requests=requests, errors=min(errors, requests), feedback=feedback, correct=feedback)
    assert not gates.decide(candidate, stable(), Thresholds()).promote


@settings(max_examples=200, deadline=None)
@given(drop=st.floats(0.08, 0.9), n=st.integers(100, 5000))
def test_a_clearly_worse_model_is_never_promoted(drop, n):
    """Observed accuracy more than the margin below stable is always rejected, whatever the sample size."""
    candidate = side(feedback=n, correct=round((0.97 - drop) * n))
    assert not gates.accuracy_gate(candidate, stable(), Thresholds()).passed


def test_thresholds_from_variables_check_names_and_values():
    t = Thresholds.from_mapping({"min_requests": "200", "max_accuracy_drop": 0.03})
    assert t.min_requests == 200 and isinstance(t.min_requests, int) and t.max_accuracy_drop == 0.03
    with pytest.raises(ValueError, match="unknown gate threshold"):
        Thresholds.from_mapping({"max_error": 0.1})
    with pytest.raises(ValueError, match="finite number"):
        Thresholds.from_mapping({"min_feedback": -1})
    with pytest.raises(ValueError, match="ratio below 1"):
        Thresholds.from_mapping({"max_p99_latency_ratio": 0.5})
    with pytest.raises(ValueError, match="class_shift_alpha"):
        Thresholds.from_mapping({"class_shift_alpha": 0})


@pytest.mark.parametrize(
    ("statistic", "dof", "expected"),
    # Reference values of the chi-square survival function (standard tables).
    [
        (3.841458820694124, 1, 0.05),
        (16.918977604620448, 9, 0.05),
        (27.877164871256568, 9, 0.001),
        (0.0, 4, 1.0),
        (9.342, 10, 0.5),
    ],
)
def test_chi2_sf_matches_tables(statistic, dof, expected):
    assert stats.chi2_sf(statistic, dof) == pytest.approx(expected, abs=2e-4)


def test_homogeneity_test_separates_same_from_shifted():
    same = {c: 100 for c in CLASSES}
    assert stats.homogeneity_test(same, {c: 900 for c in CLASSES})[2] > 0.99
    shifted = dict(same, **{"1": 10, "7": 190})
    statistic, dof, p = stats.homogeneity_test(shifted, {c: 900 for c in CLASSES})
    assert dof == 9 and p < 1e-6 and statistic > 100
    assert stats.total_variation(shifted, same) == pytest.approx(0.09)


def test_proportion_bounds_bracket_the_difference():
    low = stats.proportion_diff_lower_bound(900, 1000, 950, 1000, stats.Z_ONE_SIDED_95)
    high = stats.proportion_diff_upper_bound(900, 1000, 950, 1000, stats.Z_ONE_SIDED_95)
    assert low < -0.05 < high
    assert high - low == pytest.approx(
        2 * stats.Z_ONE_SIDED_95 * math.sqrt(0.9 * 0.1 / 1002 + 0.95 * 0.05 / 1002), rel=0.02
    )
