"""The canary decision logic and its statistics (pure functions: no servers), and the bench's traffic
simulator."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import bench_gates
from rollout import gates, staging, stats
from rollout.gates import Side, Thresholds
from serving.metric_names import LATENCY_BOUNDARIES_MS

CLASSES = [str(c) for c in range(10)]
T = Thresholds()


def buckets(latencies_ms: dict[float, int]) -> dict[float, float]:
    """Cumulative histogram on the service's boundaries of {latency: how many requests took it}."""
    out = {
        float(b): float(sum(n for ms, n in latencies_ms.items() if ms <= b)) for b in LATENCY_BOUNDARIES_MS
    }
    out[math.inf] = float(sum(latencies_ms.values()))
    return out


def spread(n: int, median_ms: float = 20.0) -> dict[float, int]:
    """n requests spread over a factor ~3 around the median (10 % each at ten latencies)."""
    factors = (0.55, 0.65, 0.75, 0.85, 0.95, 1.05, 1.2, 1.35, 1.5, 1.7)
    return {median_ms * f: n // 10 for f in factors}


def side(
    env="canary",
    version="v2",
    requests=400,
    errors=0,
    feedback=1600,
    correct=None,
    predictions=None,
    latency=None,
):
    correct = round(0.97 * feedback) if correct is None else correct
    predictions = predictions if predictions is not None else {c: requests * 8 / 10 for c in CLASSES}
    latency = spread(requests) if latency is None else latency
    return Side(env, version, requests, errors, None, feedback, correct, predictions, buckets(latency))


def stable(**kw):
    kw = {"requests": 3600, "feedback": 14400, **kw}
    return side("production", "v1", **kw)


def test_a_candidate_like_stable_is_promoted():
    decision = gates.decide(side(), stable(), T)
    assert decision.verdict == "pass" and decision.promote, decision.reasons
    assert [g.name for g in decision.gates] == ["error_rate", "latency", "online_accuracy", "class_shift"]
    as_dict = decision.to_dict()
    assert as_dict["verdict"] == "pass" and as_dict["reasons"] == []
    assert all(g["passed"] and g["verdict"] == "pass" for g in as_dict["gates"])


# (candidate errors, candidate requests, stable errors, stable requests) -> verdict at the shipped defaults.
ERROR_RATE_CASES = [
    # No verdict below min_requests on either side, however clear the data look.
    ((0, 99, 0, 3600), "inconclusive"),
    ((99, 99, 0, 3600), "inconclusive"),
    ((0, 400, 0, 99), "inconclusive"),
    # Zero errors prove "below the 1 % floor" once 1 - 0.025 ** (1 / n) <= 0.01, i.e. from n = 368 on.
    ((0, 367, 0, 3600), "inconclusive"),
    ((0, 368, 0, 3600), "pass"),
    # The case: one 5xx among the first 150 at a 0.2 % baseline is no evidence of anything.
    ((1, 150, 3, 1350), "inconclusive"),
    # Far fewer errors than stable: the ratio's upper bound is below 2x.
    ((2, 400, 100, 3600), "pass"),
    # Identical 0.5 % rates: neither below 2x nor above it can be shown yet.
    ((2, 400, 18, 3600), "inconclusive"),
    # 10 % vs 0.5 %: both bounds show it (ratio > 2x, rate > 1 %).
    ((40, 400, 18, 3600), "fail"),
    # Much worse than a perfect stable, but 4/400 cannot be shown above the 1 % floor: not a fail.
    ((4, 400, 0, 3600), "inconclusive"),
    ((12, 400, 0, 3600), "fail"),
    # 4x stable's rate but the candidate's own rate is provably under the floor: acceptable.
    ((4, 3000, 9, 36000), "pass"),
]


@pytest.mark.parametrize(("counts", "verdict"), ERROR_RATE_CASES)
def test_error_rate_gate_edges(counts, verdict):
    e_c, n_c, e_s, n_s = counts
    result = gates.error_rate_gate(side(requests=n_c, errors=e_c), stable(requests=n_s, errors=e_s), T)
    assert result.verdict == verdict, result.reason
    assert result.name == "error_rate"


def test_error_rate_floor_edge_moves_with_the_threshold():
    strict = dataclasses.replace(T, error_rate_floor=0.005)
    assert gates.error_rate_gate(side(requests=400), stable(), strict).verdict == "inconclusive"
    assert gates.error_rate_gate(side(requests=740), stable(), strict).verdict == "pass"


# (candidate latencies, stable latencies, thresholds overrides) -> verdict.
LATENCY_CASES = [
    ("same distribution", spread(400), spread(3600), {}, "pass"),
    ("twice as slow", spread(400, 40.0), spread(3600), {}, "fail"),
    ("1.2x: within the margin", spread(400, 24.0), spread(3600), {}, "pass"),
    # The limit is rounded down to a boundary (1.41x here): a 1.45x candidate cannot be shown within it.
    ("1.45x: past the rounded-down limit", spread(400, 29.0), spread(3600), {}, "inconclusive"),
    ("few samples", spread(90), spread(3600), {}, "inconclusive"),
    ("stable has few", spread(400), spread(90), {}, "inconclusive"),
    # Stable's p90 beyond the largest finite bucket: no boundary to compare at.
    ("beyond the histogram", {20000.0: 400}, {20000.0: 3600}, {"max_p99_latency_ms": 50000}, "inconclusive"),
    # 5 % of the candidate's requests over the 500 ms SLO fail even when stable is as slow.
    ("over the SLO", {20.0: 380, 900.0: 20}, {20.0: 3420, 900.0: 180}, {}, "fail"),
    # 2 of 402 over the SLO show nothing; compared at the median the candidate is like stable.
    (
        "a few over the SLO",
        {**spread(400), 900.0: 2},
        {**spread(3600), 900.0: 18},
        {"latency_quantile": 0.5},
        "pass",
    ),
    # A tighter margin than one bucket step cannot be met: the limit boundary falls on stable's own.
    ("ratio 1.1, same distribution", spread(400), spread(3600), {"max_latency_ratio": 1.1}, "inconclusive"),
    ("median quantile", spread(400, 40.0), spread(3600), {"latency_quantile": 0.5}, "fail"),
]


@pytest.mark.parametrize(
    ("label", "cand", "stab", "overrides", "verdict"), LATENCY_CASES, ids=[c[0] for c in LATENCY_CASES]
)
def test_latency_gate_edges(label, cand, stab, overrides, verdict):
    t = dataclasses.replace(T, **overrides)
    n_c, n_s = sum(cand.values()), sum(stab.values())
    result = gates.latency_gate(side(requests=n_c, latency=cand), stable(requests=n_s, latency=stab), t)
    assert result.verdict == verdict, result.reason


def test_latency_gate_reads_only_boundaries_both_sides_have_and_survives_counter_resets():
    cand = buckets(spread(400))
    # A reset replica can leave a bucket's growth above the next one's: it is clipped, never counted twice.
    cand[float(LATENCY_BOUNDARIES_MS[0])] = 10_000.0
    stab = {b: v for b, v in buckets(spread(3600)).items() if b != 500.0}
    result = gates.latency_gate(
        dataclasses.replace(side(), latency_buckets=cand),
        dataclasses.replace(stable(), latency_buckets=stab),
        T,
    )
    assert result.verdict == "pass", result.reason
    assert (
        gates.latency_gate(dataclasses.replace(side(), latency_buckets={}), stable(), T).verdict
        == "inconclusive"
    )


def acc(n: int, accuracy: float) -> dict:
    return {"feedback": n, "correct": round(accuracy * n)}


ACCURACY_CASES = [
    ("same accuracy, plenty", acc(1600, 0.97), acc(14400, 0.97), "pass"),
    ("noisy-label model", acc(240, 0.856), acc(960, 1.0), "fail"),
    ("0.85 vs 0.97", acc(1600, 0.85), acc(14400, 0.97), "fail"),
    ("0.96 vs 0.986 early", acc(300, 0.96), acc(2700, 0.986), "inconclusive"),
    ("0.96 vs 0.986 late", acc(3000, 0.96), acc(27000, 0.986), "fail"),
    ("better than stable", acc(240, 1.0), acc(960, 0.986), "pass"),
    # A perfect stable: the candidate passes on the 2 % floor alone once its own bound is below it.
    ("perfect stable, 2 misses in 400", acc(400, 0.995), acc(3600, 1.0), "pass"),
    ("perfect stable, 5 misses in 400", acc(400, 0.9875), acc(3600, 1.0), "inconclusive"),
    ("perfect stable, 20 misses in 400", acc(400, 0.95), acc(3600, 1.0), "fail"),
    ("too little feedback", acc(99, 0.99), acc(14400, 0.97), "inconclusive"),
    ("stable too little feedback", acc(1600, 0.99), acc(99, 0.97), "inconclusive"),
]


@pytest.mark.parametrize(
    ("label", "cand", "stab", "verdict"), ACCURACY_CASES, ids=[c[0] for c in ACCURACY_CASES]
)
def test_accuracy_gate_edges(label, cand, stab, verdict):
    result = gates.accuracy_gate(side(**cand), stable(**stab), T)
    assert result.verdict == verdict, result.reason


CLASS_SHIFT_CASES = [
    ("same", {c: 80 for c in CLASSES}, "pass"),
    ("collapsed onto two classes", {"1": 600, "7": 200}, "fail"),
    # Real but small: p tiny, TVD 0.1 <= 0.2.
    ("small real shift", dict({c: 80 for c in CLASSES}, **{"1": 0, "7": 160}), "pass"),
    ("too few predictions", {"1": 60, "7": 30}, "inconclusive"),
]


@pytest.mark.parametrize(
    ("label", "counts", "verdict"), CLASS_SHIFT_CASES, ids=[c[0] for c in CLASS_SHIFT_CASES]
)
def test_class_shift_gate_edges(label, counts, verdict):
    result = gates.class_shift_gate(side(predictions=counts), stable(), T)
    assert result.verdict == verdict, result.reason


def test_a_class_shift_the_labels_show_to_be_corrections_passes():
    """Stable misreads inputs it never learned; a candidate that reads them right predicts other classes."""
    moved = {"1": 600, "7": 200}
    stable_wrong = stable(correct=round(0.70 * 14400))
    corrected = gates.class_shift_gate(side(predictions=moved, correct=1580), stable_wrong, T)
    assert corrected.verdict == "pass" and "corrects stable's errors" in corrected.reason
    assert corrected.measured["misclassification_ratio_upper_bound"] < 1
    # the same shift with no better accuracy (or too little feedback to show it) still fails
    assert gates.class_shift_gate(side(predictions=moved), stable(), T).verdict == "fail"
    few = gates.class_shift_gate(side(predictions=moved, feedback=50, correct=50), stable_wrong, T)
    assert few.verdict == "fail"


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        (["pass", "pass", "pass", "pass"], "pass"),
        (["pass", "inconclusive", "pass", "pass"], "inconclusive"),
        (["inconclusive", "fail", "pass", "pass"], "fail"),
        (["fail", "fail", "fail", "fail"], "fail"),
    ],
)
def test_one_fail_fails_and_one_open_gate_keeps_the_decision_open(verdicts, combined):
    assert gates.combine(verdicts) == combined


def test_reasons_list_failed_gates_first_then_open_ones():
    decision = gates.decide(side(requests=400, errors=40, feedback=50, correct=50), stable(), T)
    assert decision.verdict == "fail" and not decision.promote
    assert decision.reasons[0].startswith("error_rate:")
    assert decision.reasons[1].startswith("online_accuracy:") and "not enough data" in decision.reasons[1]
    assert {g["name"]: g["verdict"] for g in decision.to_dict()["gates"]}["latency"] == "pass"


def test_a_guard_stops_only_what_fails_and_waits_only_for_the_minimums():
    # Enough data, no 5xx in 200 requests: the error-rate gate cannot yet show the rate below its 1 % floor.
    open_only = gates.decide(side(requests=200, feedback=800), stable(), T)
    assert open_only.verdict == "inconclusive" and gates.guard(open_only) == "pass"
    assert [g.name for g in open_only.gates if g.verdict == "inconclusive"] == ["error_rate"]
    # Short of min_feedback on one side: the guard waits, as the verdict does.
    short = gates.decide(side(feedback=50, correct=50), stable(), T)
    assert gates.guard(short) == "inconclusive"
    assert [g.name for g in short.gates if not g.enough_data] == ["online_accuracy"]
    # A failed gate fails the guard too, with or without the minimums elsewhere.
    failing = gates.decide(side(errors=40, feedback=50, correct=50), stable(), T)
    assert failing.verdict == "fail" and gates.guard(failing) == "fail"
    passing = gates.decide(side(requests=4000, feedback=16000), stable(), T)
    assert passing.verdict == "pass" and gates.guard(passing) == "pass"


@settings(max_examples=300, deadline=None)
@given(
    requests=st.integers(0, T.min_requests - 1),
    errors=st.integers(0, 200),
    feedback=st.integers(0, 5000),
)
def test_below_the_minimum_requests_no_candidate_is_promoted(requests, errors, feedback):
    candidate = side(requests=requests, errors=min(errors, requests), feedback=feedback, correct=feedback)
    decision = gates.decide(candidate, stable(), T)
    assert not decision.promote
    assert gates.error_rate_gate(candidate, stable(), T).verdict == "inconclusive"


@settings(max_examples=200, deadline=None)
@given(ratio=st.floats(3.0, 50.0), n=st.integers(100, 5000))
def test_a_clearly_worse_model_is_never_promoted(ratio, n):
    """Observed misclassifications at 3x stable's or more (and above the floor) never pass, at any size."""
    wrong = min(n, max(math.ceil(ratio * 0.03 * n), math.ceil(0.03 * n)))
    candidate = side(feedback=n, correct=n - wrong)
    assert gates.accuracy_gate(candidate, stable(), T).verdict != "pass"


def test_thresholds_from_variables_check_names_and_values():
    t = Thresholds.from_mapping({"min_requests": "200", "max_misclassification_ratio": 1.5})
    assert t.min_requests == 200 and isinstance(t.min_requests, int) and t.max_misclassification_ratio == 1.5
    assert Thresholds.from_mapping({}) == Thresholds()
    with pytest.raises(ValueError, match="unknown gate threshold"):
        Thresholds.from_mapping({"max_error_rate_increase": 0.02})
    with pytest.raises(ValueError, match="finite number"):
        Thresholds.from_mapping({"min_feedback": -1})
    with pytest.raises(ValueError, match="below 1"):
        Thresholds.from_mapping({"max_latency_ratio": 0.5})
    with pytest.raises(ValueError, match="class_shift_alpha"):
        Thresholds.from_mapping({"class_shift_alpha": 0})
    with pytest.raises(ValueError, match="alpha_promote"):
        Thresholds.from_mapping({"alpha_promote": 0.5})
    with pytest.raises(ValueError, match="latency_quantile"):
        Thresholds.from_mapping({"latency_quantile": 0})


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


@pytest.mark.parametrize("alpha", [0.025, 0.005])
@pytest.mark.parametrize("n", [10, 30, 150, 400])
@pytest.mark.parametrize("p", [0.001, 0.005, 0.02, 0.1, 0.5, 0.98])
def test_proportion_bounds_hold_their_confidence_exactly(alpha, n, p):
    """Exact binomial probability that a bound lands on the wrong side of the true p: <= alpha, with 1.6x
    slack
    for the score interval above EXACT_BELOW events (its known small excess)."""
    z = stats.z_for(alpha)
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    bounds = [stats.wilson_bounds(k, n, z) for k in range(n + 1)]
    assert sum(pm for pm, (_, up) in zip(pmf, bounds, strict=True) if up < p) <= 1.6 * alpha
    assert sum(pm for pm, (low, _) in zip(pmf, bounds, strict=True) if low > p) <= 1.6 * alpha


def test_exact_bounds_match_closed_forms():
    z = stats.z_for(0.025)
    assert stats.wilson_bounds(0, 400, z) == pytest.approx((0.0, 1 - 0.025 ** (1 / 400)), rel=1e-9)
    assert stats.wilson_bounds(1, 400, z)[0] == pytest.approx(1 - 0.975 ** (1 / 400), rel=1e-9)
    assert stats.wilson_bounds(400, 400, z) == pytest.approx((0.025 ** (1 / 400), 1.0), rel=1e-9)
    assert stats.wilson_bounds(0, 0, z) == (0.0, 1.0)


def test_rate_ratio_bounds_bracket_the_ratio():
    z = stats.z_for(0.025)
    low, high = stats.rate_ratio_bounds(30, 1000, 300, 9000, z)
    assert low < 0.9 < high and low > 0.5 and high < 1.6
    assert stats.rate_ratio_bounds(0, 1000, 0, 9000, z) == (0.0, math.inf)
    low, high = stats.rate_ratio_bounds(50, 1000, 0, 9000, z)
    assert high == math.inf and low > 10


def test_proportion_diff_bounds_bracket_the_difference():
    z = stats.z_for(0.05)
    low, high = stats.proportion_diff_bounds(90, 1000, 95, 1000, z)
    assert low < -0.005 < high and high - low < 0.06


def test_simulator_buckets_and_counts_like_prometheus():
    rng = np.random.default_rng(3)
    times = np.arange(1, 2001) / 10.0
    model = bench_gates.Model(error_rate=0.05, latency_median_ms=20.0, latency_sigma=0.5, accuracy=0.9)
    served = bench_gates.serve(rng, "canary", "v2", model, times, batch=2)
    s = served.side(100.0, delay=2.0)
    assert s.requests == 1000 and s.errors == served.errors[:1000].sum() > 0
    # The +Inf bucket holds every request, and each boundary counts exactly the requests at or below it.
    assert s.latency_buckets[math.inf] == s.requests
    counts = np.bincount(served.bucket[:1000], minlength=len(LATENCY_BOUNDARIES_MS) + 1)
    for i, b in enumerate(LATENCY_BOUNDARIES_MS):
        assert s.latency_buckets[float(b)] == counts[: i + 1].sum()
    # Errors answer no images; each answered request gives `batch` predictions; feedback lags by the delay.
    answered = 1000 - s.errors
    assert sum(s.predictions.values()) == 2 * answered
    assert s.feedback == 2 * np.sum(served.times[~served.errors] <= 98.0)
    assert 0.85 < s.feedback_correct / s.feedback < 0.95


def test_simulator_runs_the_demo_strategy_from_the_local_inventory():
    analyses = bench_gates.DEMO_STRATEGY.analyses
    assert [(a.weight, a.mode) for a in analyses] == [(0.5, "verdict"), (0.8, "verdict")]
    assert bench_gates.DEMO_STRATEGY.thresholds.max_latency_ratio == 2.0  # the demo's own override
    looks = bench_gates.looks(analyses[0])
    assert looks[0] == analyses[0].window_s and looks[1] - looks[0] == analyses[0].interval_s
    assert looks[-1] <= analyses[0].max_window_s
    rng = np.random.default_rng(7)
    v3 = bench_gates.trial(
        rng, bench_gates.DEMO_V3, bench_gates.DEMO_V2, bench_gates.DEMO, bench_gates.DEMO_STRATEGY
    )
    assert (v3.verdict, v3.step, v3.seconds) == ("fail", 0, analyses[0].window_s)
    v2 = bench_gates.trial(
        rng, bench_gates.DEMO_V2, bench_gates.DEMO_V1, bench_gates.DEMO, bench_gates.DEMO_STRATEGY
    )
    assert (v2.verdict, v2.step) == ("pass", -1)
    assert v2.seconds <= sum(a.max_window_s for a in analyses)


def test_simulator_runs_the_shipped_strategy_step_by_step():
    analyses = bench_gates.SHIPPED.analyses
    assert [(a.weight, a.mode) for a in analyses] == [(0.1, "guard"), (0.5, "verdict")]
    rng = np.random.default_rng(11)
    slow = dataclasses.replace(bench_gates.BASE, latency_median_ms=60.0)
    out = bench_gates.trial(rng, slow, bench_gates.BASE, bench_gates.DEFAULT, bench_gates.SHIPPED)
    assert (out.verdict, out.step) == ("fail", 0)  # 5x the latency: the guard stops it
    # An identical model passes the guard, then the half-traffic verdict.
    out = bench_gates.trial(rng, bench_gates.BASE, bench_gates.BASE, bench_gates.DEFAULT, bench_gates.SHIPPED)
    assert out.verdict == "pass" and out.seconds > analyses[0].window_s + analyses[1].window_s - 1


@pytest.mark.parametrize(
    ("candidate", "champion", "tolerance", "passed"),
    [
        (0.9861, 0.9861, 0.01, True),
        (0.9800, 0.9861, 0.01, True),
        (0.9750, 0.9861, 0.01, False),
        # The demo's noisy-label v3 against v2: 13-14 points below production.
        (0.8556, 1.0, 0.01, False),
        (0.8556, 1.0, 0.2, True),
        (1.0, 0.9861, 0.0, True),
    ],
)
def test_champion_challenger_on_one_split(candidate, champion, tolerance, passed):
    check = staging.champion_verdict("v3", candidate, "v2", champion, 360, tolerance)
    assert check["passed"] is passed, check["reason"]
    assert check["threshold"] == {"max_drop_to_champion": tolerance}


def test_champion_check_refuses_without_production_url():
    import httpx

    with httpx.Client() as client:
        check = staging.champion_check(client, None, "v1", "v2", 0.99, np.zeros((1, 8, 8)), np.zeros(1), 0.01)
    assert not check["passed"] and "no production URL" in check["reason"]
