"""The lease a pipeline run must fit in, read and extended through chi_scripts (python-chi, imported here
only).

The policy (pipeline/policy.py) says how long to extend; Chameleon has the last word: a refused extension
turns the decision into a refusal carrying Chameleon's reason as it was sent.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import replace
from pathlib import Path

from pipeline.policy import REFUSE, Decision, Lease, Policy, Signals, decide

BLAZAR_TIME = "%Y-%m-%dT%H:%M:%S.%f"


def _epoch(text: str) -> float:
    return calendar.timegm(dt.datetime.strptime(text, BLAZAR_TIME).timetuple())


def current_lease(inventory: str | Path) -> Lease | None:
    """The inventory's live lease (start, end in epoch seconds), or None when it has none."""
    from chi_scripts import lease as leases
    from chi_scripts.auth import connect
    from chi_scripts.errors import CloudError
    from chi_scripts.spec import load_target

    spec = load_target(inventory).spec
    connect(spec)
    found = leases.find_leases(spec.lease_name)
    if len(found) > 1:
        raise CloudError(f"{len(found)} live leases are named {spec.lease_name}; release the extra ones")
    return Lease(_epoch(found[0]["start_date"]), _epoch(found[0]["end_date"])) if found else None


def apply_extension(decision: Decision, inventory: str | Path) -> Decision:
    """Extend the lease when the decision asks for it; Chameleon's refusal becomes the decision's reason."""
    from chi_scripts import operations
    from chi_scripts.errors import CloudError

    if decision.extend_by_s <= 0:
        return decision
    try:
        operations.extend(inventory, f"{decision.extend_by_s // 60}m")
    except CloudError as exc:
        return replace(decision, action=REFUSE, reasons=(*decision.reasons, str(exc)), extend_by_s=0)
    return replace(
        decision, reasons=(*decision.reasons, f"lease extended by {decision.extend_by_s} s on Chameleon")
    )


def decide_within_lease(
    policy: Policy, signals: Signals, inventory: str | Path, extend: bool, now: float
) -> Decision:
    """decide() against the inventory's live lease; with `extend`, the extension it asks for is made."""
    from chi_scripts.errors import CloudError

    lease = current_lease(inventory)
    if lease is None:
        raise CloudError(f"{inventory} has no live lease")
    decision = decide(policy, signals, lease, now)
    return apply_extension(decision, inventory) if extend else decision
