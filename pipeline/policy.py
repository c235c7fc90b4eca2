"""When to retrain: a pure decision over frozen facts and an injected clock (rollout/gates.py's style).

Triggers: enough new labelled feedback, input drift past a threshold (with hysteresis: once it has triggered,
drift must fall below ``drift_rearm`` before it can trigger again), a change of the training code/config
commit, or the schedule. Holds: a cooldown after the last training and a daily budget. Then the lease: the
estimated training + rollout time (with a margin) must fit before the lease ends, or the lease is extended
within Chameleon's rule (a lease lasts at most ``max_lease_s`` from its start), or the run is refused.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

DAY_S = 86400.0
RETRAIN, SKIP, REFUSE = "retrain", "skip", "refuse"


@dataclass(frozen=True)
class Policy:
    min_new_labels: int = 200
    drift_threshold: float = 0.25
    drift_rearm: float = 0.15  # below this the drift trigger is armed again (hysteresis)
    schedule_s: float | None = 7 * DAY_S  # retrain at least this often; None: never on schedule
    cooldown_s: float = 3600.0
    max_per_day: int = 3
    train_estimate_s: float = 600.0
    # The shipped strategy run to its caps (guard 300 s + verdict 900 s, rollout/strategy.py) plus staging and
    # the promotion; a strategy with longer steps or pauses needs its own value.
    rollout_estimate_s: float = 1500.0
    lease_margin_s: float = 600.0
    # Chameleon (CHI@TACC, CHI@UC): a lease may last 7 days from its start; extending past that is refused.
    max_lease_s: float = 7 * DAY_S

    def __post_init__(self):
        if self.drift_rearm > self.drift_threshold:
            raise ValueError("drift_rearm must not exceed drift_threshold (hysteresis)")
        if self.min_new_labels < 1 or self.max_per_day < 0 or self.cooldown_s < 0:
            raise ValueError("min_new_labels >= 1, max_per_day >= 0 and cooldown_s >= 0 are required")

    @classmethod
    def from_mapping(cls, data: dict[str, Any] | None) -> Policy:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown pipeline policy keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    @property
    def needed_s(self) -> float:
        return self.train_estimate_s + self.rollout_estimate_s + self.lease_margin_s


@dataclass(frozen=True)
class Signals:
    new_labels: int  # labelled feedback since the data version production was trained on
    drift: float | None  # drift statistic of live inputs vs the training data; None: not measured
    drift_armed: bool  # hysteresis state carried from the previous decision
    code_commit: str  # commit of the training code and configs now
    trained_commit: str | None  # commit production's model was trained from (its card); None: unknown
    trainings: tuple[float, ...] = ()  # start times of past pipeline trainings (epoch seconds)


@dataclass(frozen=True)
class Lease:
    start: float
    end: float


@dataclass(frozen=True)
class Decision:
    action: str  # retrain | skip | refuse
    triggers: tuple[str, ...]
    reasons: tuple[str, ...]
    drift_armed: bool  # the state to pass to the next decision
    extend_by_s: int = 0  # extend the lease by this much before starting (whole minutes)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _drift(policy: Policy, s: Signals) -> tuple[bool, bool, str | None]:
    """(triggers, armed next, why)"""
    if s.drift is None:
        return False, s.drift_armed, None
    if s.drift >= policy.drift_threshold:
        if s.drift_armed:
            return True, False, f"input drift {s.drift:.3f} >= {policy.drift_threshold:g}"
        return (
            False,
            False,
            (
                f"input drift {s.drift:.3f} is still high but already triggered a training; "
                f"it re-arms below {policy.drift_rearm:g}"
            ),
        )
    return False, s.drift_armed or s.drift < policy.drift_rearm, None


def triggers(policy: Policy, s: Signals, now: float) -> tuple[list[str], list[str], bool]:
    names, why = [], []
    if s.new_labels >= policy.min_new_labels:
        names.append("new_data")
        why.append(f"{s.new_labels} new labelled samples >= {policy.min_new_labels}")
    drift, armed, drift_why = _drift(policy, s)
    if drift:
        names.append("drift")
    if drift_why:
        why.append(drift_why)
    if s.trained_commit is not None and s.code_commit != s.trained_commit:
        names.append("code")
        why.append(
            f"training code/config commit {s.code_commit[:12]} != production's {s.trained_commit[:12]}"
        )
    last = max(s.trainings, default=None)
    if policy.schedule_s is not None and (last is None or now - last >= policy.schedule_s):
        names.append("schedule")
        why.append(
            "never trained by the pipeline" if last is None else f"last training {now - last:.0f} s ago"
        )
    return names, why, armed


def decide(policy: Policy, signals: Signals, lease: Lease | None, now: float) -> Decision:
    """``lease`` None: no lease bounds the run (a local machine)."""
    names, why, armed = triggers(policy, signals, now)
    if not names:
        return Decision(
            SKIP, (), tuple(why) or ("no trigger: no new data, drift, code change or schedule",), armed
        )
    found = tuple(names)
    # a skipped run does not consume the drift trigger
    keep = signals.drift_armed if "drift" in names else armed
    last = max(signals.trainings, default=None)
    if last is not None and now - last < policy.cooldown_s:
        wait = policy.cooldown_s - (now - last)
        return Decision(
            SKIP, found, (*why, f"cooldown: last training {now - last:.0f} s ago, {wait:.0f} s to go"), keep
        )
    today = [t for t in signals.trainings if now - DAY_S < t <= now]
    if len(today) >= policy.max_per_day:
        return Decision(
            SKIP,
            found,
            (*why, f"budget: {len(today)} trainings in the last 24 h (at most {policy.max_per_day})"),
            keep,
        )
    if lease is None:
        return Decision(RETRAIN, found, tuple(why), armed)
    left = lease.end - now
    if left >= policy.needed_s:
        return Decision(
            RETRAIN, found, (*why, f"lease: {left:.0f} s left >= {policy.needed_s:.0f} s needed"), armed
        )
    extend_by = math.ceil((policy.needed_s - left) / 60.0) * 60
    if lease.end + extend_by - lease.start > policy.max_lease_s:
        return Decision(
            REFUSE,
            found,
            (
                *why,
                f"lease: {max(left, 0):.0f} s left < {policy.needed_s:.0f} s needed, and extending by "
                f"{extend_by} s would make it longer than Chameleon's {policy.max_lease_s:.0f} s",
            ),
            keep,
        )
    return Decision(
        RETRAIN,
        found,
        (
            *why,
            f"lease: {max(left, 0):.0f} s left < {policy.needed_s:.0f} s needed: "
            f"extend by {extend_by} s first",
        ),
        armed,
        extend_by,
    )
