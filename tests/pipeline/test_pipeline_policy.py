"""The retrain policy: table-driven cases on a frozen clock; the lease cases against the fake Chameleon (real
python-chi over HTTP) through chi_scripts."""

from __future__ import annotations

import time

import pytest

from pipeline.lease import apply_extension, current_lease
from pipeline.policy import DAY_S, REFUSE, RETRAIN, SKIP, Lease, Policy, Signals, decide
from tests.chi.conftest import fake, make_inventory  # noqa: F401  (the fake Chameleon fixtures)

NOW = 1_800_000_000.0
POLICY = Policy(
    min_new_labels=100,
    drift_threshold=0.3,
    drift_rearm=0.1,
    schedule_s=7 * DAY_S,
    cooldown_s=3600,
    max_per_day=2,
    train_estimate_s=600,
    rollout_estimate_s=900,
    lease_margin_s=300,  # 1800 s needed in all
)
QUIET = Signals(
    new_labels=0,
    drift=0.05,
    drift_armed=True,
    code_commit="a" * 40,
    trained_commit="a" * 40,
    trainings=(NOW - DAY_S,),
)
LONG_LEASE = Lease(NOW - 3600, NOW + 6 * 3600)


def signals(**changes) -> Signals:
    return Signals(**{**QUIET.__dict__, **changes})


CASES = [
    # id, signals, lease, action, triggers, reason fragment, drift armed after
    ("quiet", QUIET, LONG_LEASE, SKIP, (), "no trigger", True),
    ("labels below threshold", signals(new_labels=99), LONG_LEASE, SKIP, (), "no trigger", True),
    (
        "labels at threshold",
        signals(new_labels=100),
        LONG_LEASE,
        RETRAIN,
        ("new_data",),
        "100 new labelled",
        True,
    ),
    (
        "drift past threshold",
        signals(drift=0.31),
        LONG_LEASE,
        RETRAIN,
        ("drift",),
        "input drift 0.310",
        False,
    ),
    (
        "drift between the bands stays disarmed",
        signals(drift=0.2, drift_armed=False),
        LONG_LEASE,
        SKIP,
        (),
        "no trigger",
        False,
    ),
    (
        "drift high again before re-arming",
        signals(drift=0.5, drift_armed=False),
        LONG_LEASE,
        SKIP,
        (),
        "already triggered",
        False,
    ),
    (
        "drift below re-arm band re-arms",
        signals(drift=0.09, drift_armed=False),
        LONG_LEASE,
        SKIP,
        (),
        "no trigger",
        True,
    ),
    ("drift not measured", signals(drift=None), LONG_LEASE, SKIP, (), "no trigger", True),
    (
        "code commit changed",
        signals(code_commit="b" * 40),
        LONG_LEASE,
        RETRAIN,
        ("code",),
        "commit bbbbbbbbbbbb",
        True,
    ),
    (
        "production's commit unknown",
        signals(trained_commit=None, code_commit="b" * 40),
        LONG_LEASE,
        SKIP,
        (),
        "no trigger",
        True,
    ),
    ("schedule due", signals(trainings=(NOW - 7 * DAY_S,)), LONG_LEASE, RETRAIN, ("schedule",), "ago", True),
    ("never trained", signals(trainings=()), LONG_LEASE, RETRAIN, ("schedule",), "never trained", True),
    (
        "cooldown",
        signals(new_labels=500, trainings=(NOW - 600,)),
        LONG_LEASE,
        SKIP,
        ("new_data",),
        "cooldown: last training 600 s ago, 3000 s to go",
        True,
    ),
    (
        "cooldown keeps the drift trigger armed",
        signals(drift=0.4, trainings=(NOW - 600,)),
        LONG_LEASE,
        SKIP,
        ("drift",),
        "cooldown",
        True,
    ),
    (
        "budget spent",
        signals(new_labels=500, trainings=(NOW - 20000, NOW - 7200)),
        LONG_LEASE,
        SKIP,
        ("new_data",),
        "budget: 2 trainings in the last 24 h (at most 2)",
        True,
    ),
    (
        "budget counts the last 24 h only",
        signals(new_labels=500, trainings=(NOW - DAY_S - 1, NOW - 7200)),
        LONG_LEASE,
        RETRAIN,
        ("new_data",),
        "lease: 21600 s left",
        True,
    ),
    ("no lease bounds a local run", signals(new_labels=500), None, RETRAIN, ("new_data",), "500 new", True),
    (
        "lease too short: extend",
        signals(new_labels=500),
        Lease(NOW - 3600, NOW + 1000),
        RETRAIN,
        ("new_data",),
        "extend by 840 s first",
        True,
    ),
    (
        "lease at Chameleon's limit: refuse",
        signals(new_labels=500),
        Lease(NOW - 7 * DAY_S + 1000, NOW + 1000),
        REFUSE,
        ("new_data",),
        "longer than Chameleon's 604800 s",
        True,
    ),
    (
        "lease ended: refuse",
        signals(drift=0.4),
        Lease(NOW - 7 * DAY_S, NOW - 10),
        REFUSE,
        ("drift",),
        "0 s left < 1800 s needed",
        True,
    ),
]


@pytest.mark.parametrize(
    "signals_, lease, action, found, fragment, armed", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_decide(signals_, lease, action, found, fragment, armed):
    decision = decide(POLICY, signals_, lease, NOW)
    assert (decision.action, decision.triggers, decision.drift_armed) == (action, found, armed), decision
    assert fragment in decision.reason
    assert (decision.extend_by_s > 0) == ("extend by" in decision.reason)


def test_extension_is_whole_minutes_and_enough():
    decision = decide(POLICY, signals(new_labels=500), Lease(NOW - 60, NOW + 1000), NOW)
    assert decision.extend_by_s % 60 == 0 and 1000 + decision.extend_by_s >= POLICY.needed_s


def test_policy_from_mapping_checks_its_keys():
    assert Policy.from_mapping({"min_new_labels": 5}).min_new_labels == 5
    with pytest.raises(ValueError, match="unknown pipeline policy keys"):
        Policy.from_mapping({"min_new_label": 5})
    with pytest.raises(ValueError, match="hysteresis"):
        Policy(drift_threshold=0.1, drift_rearm=0.2)


def test_a_short_lease_is_extended_on_chameleon_then_fits(fake, make_inventory):  # noqa: F811
    import chi_scripts

    inv = make_inventory(duration="20m")
    chi_scripts.reserve(inv)
    now = time.time()
    lease = current_lease(inv)
    assert 0 < lease.end - now <= 20 * 60
    decision = decide(POLICY, signals(new_labels=500, trainings=(now - DAY_S,)), lease, now)
    assert decision.action == RETRAIN and decision.extend_by_s > 0
    extended = apply_extension(decision, inv)
    assert extended.action == RETRAIN and extended.reasons[-1].startswith("lease extended by")
    longer = current_lease(inv)
    assert longer.end - lease.end == pytest.approx(decision.extend_by_s, abs=60)
    # now it fits: no further extension asked
    assert decide(POLICY, signals(new_labels=500, trainings=(now - DAY_S,)), longer, now).extend_by_s == 0


def test_chameleon_refusing_the_extension_refuses_the_run(fake, make_inventory):  # noqa: F811
    import chi_scripts

    inv = make_inventory(duration="20m")
    chi_scripts.reserve(inv)
    fake.config.extend_refusal = (
        "Not enough resources available with query [node_type == compute_cascadelake_r]"
    )
    now = time.time()
    decision = decide(POLICY, signals(new_labels=500, trainings=(now - DAY_S,)), current_lease(inv), now)
    refused = apply_extension(decision, inv)
    assert refused.action == REFUSE and refused.extend_by_s == 0
    assert "Not enough resources available with query [node_type == compute_cascadelake_r]" in refused.reason


def test_no_lease_on_chameleon(fake, make_inventory):  # noqa: F811
    assert current_lease(make_inventory()) is None
