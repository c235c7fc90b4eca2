"""`rollout rollback --to <version|previous|UTC time>`: serve in production what served it then.

The target comes from the ledger (the production alias moves it recorded), so a time resolves to the version
that production served at that moment. The change goes through the backend like any rollout step (on gitops a
new commit, which ArgoCD's self-heal then keeps), the canary loses any weight, and the aliases move
(production → target, previous → what production was); the ledger records it all.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

from rollout import aliases, backends, ledger, strategy
from rollout import state as state_metric
from rollout.backend import BackendError
from rollout.runstate import ACTIVE, Store


class NotFound(Exception):
    """The target does not name anything production served (exit 2)."""


class RollbackFailed(Exception):
    """The ledger does not verify, a rollout is active, or the backend failed (exit 1)."""


def parse_time(text: str) -> float | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d %H:%M:%S"):
        try:
            return float(calendar.timegm(time.strptime(text, fmt)))
        except ValueError:
            continue
    return None


def resolve(entries: list[dict[str, Any]], registry: str, to: str) -> str:
    reg = aliases.read(registry)
    if to == "previous":
        if not reg["aliases"]["previous"]:
            raise NotFound("the registry's previous alias is unset: nothing to roll back to")
        return reg["aliases"]["previous"]
    at = parse_time(to)
    if at is not None:
        version = ledger.production_at(entries, at)
        if version is None:
            raise NotFound(f"the ledger records no production version at or before {to}")
        return version
    if to not in reg["versions"]:
        raise NotFound(
            f"{to!r} is neither a registered version, `previous`, nor a UTC time like 2026-12-01T21:00:00Z"
        )
    if to not in ledger.production_versions(entries):
        raise NotFound(f"{to} never served production according to the ledger: roll it out instead")
    return to


def run(settings: dict[str, Any], store: Store, to: str, reason: str = "") -> str:
    store.acquire()
    try:
        current_state = store.load()
        if current_state and current_state["status"] in ACTIVE:
            raise RollbackFailed(
                f"rollout {current_state['id']} is {current_state['status']}: `rollout abort` it first"
            )
        book = ledger.Ledger(store.ledger_path)
        try:
            entries = book.verify()
        except ledger.LedgerTampered as exc:
            raise RollbackFailed(f"ledger tampered, refusing to act on it: {exc}") from None
        registry = settings["registry"]
        target = resolve(entries, registry, to)
        strat = strategy.load(settings.get("strategy"))
        backend = backends.load(settings["backend"], settings["backend_settings"])
        why = f"rollback --to {to}" + (f": {reason}" if reason else "")
        try:
            change = backend.deploy("production", target)
            book.append("deploy", None, {"production": target}, why, commit=change.commit)
            backend.wait_serving("production", target, strat.serving_timeout_s, print)
            change = backend.set_split(target, None, 0.0)
            book.append("weight", None, {"canary_weight": [None, 0.0]}, why, commit=change.commit)
            backend.wait_split(0.0, strat.split_timeout_s, print)
        except BackendError as exc:
            raise RollbackFailed(f"backend: {exc}") from None
        old = aliases.read(registry)["aliases"]["production"]
        moves = {"production": target, "canary": None}
        if old != target:
            moves["previous"] = old
        changes = aliases.move(registry, moves, why)
        if changes:
            book.append("alias", None, changes, why)
        book.append("rollback_to", None, {"target": target, "was": old}, why)
        if settings.get("textfile"):
            from pathlib import Path

            state_metric.write(Path(settings["textfile"]), target, "rolled_back", 0.0)
        return target
    finally:
        store.release()
