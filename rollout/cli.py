"""`rollout` verbs: start, status, pause, resume, promote, abort, history, plan, rollback.

Settings come from a JSON file the playbooks write from the inventory (`--settings`), or, for `plan`, straight
from an inventory directory (`--inventory`: its literal `chiops_backend`, `chiops_environments` and
`rollout_strategy`). A started rollout keeps its settings in its state, so the other verbs need only the state
directory. Exit codes: 0 done, 1 failed or rolled back (reason on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_STATE_DIR = "runs/local/rollout"


class UsageError(Exception):
    pass


def _err(message: str) -> None:
    print(f"rollout: {message}", file=sys.stderr)


# ---- settings ------------------------------------------------------------------------------------------
def read_settings(path: str) -> dict[str, Any]:
    try:
        settings = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read settings {path}: {exc}") from None
    for key in ("backend", "registry"):
        if not settings.get(key):
            raise UsageError(f"settings {path} lack {key!r}")
    settings.setdefault("backend_settings", {})
    settings.setdefault("strategy", {})
    return settings


def inventory_settings(inventory: str) -> dict[str, Any]:
    """What `plan` needs from an inventory, read without Ansible: only literal values are used."""
    directory = Path(inventory) / "group_vars" / "all"
    if not directory.is_dir():
        raise UsageError(f"{inventory} is not an inventory (no group_vars/all/)")
    merged: dict[str, Any] = {}
    for path in sorted(directory.glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    if merged.get("chiops_backend") not in ("local", "kubernetes"):
        raise UsageError(f"{inventory}: chiops_backend is {merged.get('chiops_backend')!r}")
    registry = merged.get("chiops_registry", "")
    return {
        "backend": merged["chiops_backend"],
        "environments": merged.get("chiops_environments", []),
        "strategy": merged.get("rollout_strategy") or {},
        "registry": registry if "{{" not in str(registry) else "",
        "inventory": str(inventory),
    }


def state_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "state_dir", None):
        return Path(args.state_dir)
    if getattr(args, "settings", None):
        settings = read_settings(args.settings)
        if settings.get("state_dir"):
            return Path(settings["state_dir"])
    return Path(os.environ.get("CHIOPS_ROLLOUT_DIR", DEFAULT_STATE_DIR))


def build_engine(settings: dict[str, Any], store, skip_analysis: bool = False):
    from rollout import backends, engine, strategy

    strat = strategy.load(settings.get("strategy"), skip_analysis=skip_analysis)
    backend = backends.load(settings["backend"], settings["backend_settings"])
    textfile = Path(settings["textfile"]) if settings.get("textfile") else None
    return engine.Engine(
        store,
        backend,
        strat,
        settings["registry"],
        engine.prometheus_evidence(backend.prometheus_url()),
        textfile=textfile,
    )


def _outcome(state: dict[str, Any]) -> int:
    print(f"{state['version']}: {state['status']} - {state['reason']}")
    if state.get("report_files"):
        print("report: " + " ".join(state["report_files"]))
    if state["status"] in ("promoted", "staged"):
        return EXIT_OK
    _err(f"rollout of {state['version']} {state['status']}: {state['reason']}")
    return EXIT_FAILED


# ---- verbs ---------------------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    from rollout import engine, runstate, strategy

    settings = read_settings(args.settings)
    try:
        strategy.load(settings.get("strategy"), skip_analysis=args.skip_analysis)
    except strategy.StrategyError as exc:
        raise UsageError(str(exc)) from None
    if settings.get("refuse"):
        _err(settings["refuse"])
        return EXIT_FAILED
    store = runstate.Store(state_dir(args))
    eng = build_engine(settings, store, args.skip_analysis)
    try:
        state = eng.start(args.version, settings, args.skip_analysis, args.report_dir)
    except engine.Refused as exc:
        _err(str(exc))
        return EXIT_FAILED
    except runstate.Busy as exc:
        _err(str(exc))
        return EXIT_FAILED
    return _outcome(state)


def describe(state: dict[str, Any], alive: bool, now: float) -> str:
    from rollout.strategy import Action

    actions = [Action.from_dict(a) for a in state["actions"]]
    lines = [
        f"rollout {state['id']}: {state['version']} (stable {state['stable'] or 'none'}) - {state['status']}",
        f"controller: {'running' if alive else 'not running'}",
    ]
    pending = state.get("weight_pending")
    route = f"public route: canary weight {state['weight']:g}"
    if pending is not None:
        route += f" (a change to {pending:g} was in flight; both are strategy steps)"
    lines.append(route)
    deployed = ", ".join(f"{e}={v}" for e, v in state.get("deployed", {}).items()) or "none"
    lines.append(
        f"production serves {state.get('production') or 'nothing'}; candidate environments: {deployed}"
    )
    for i, action in enumerate(actions):
        mark = "done" if i < state["step"] else ("now " if i == state["step"] else "    ")
        lines.append(f"  [{mark}] {i + 1}. {action.label}")
    evidence = state.get("evidence")
    if evidence and state["status"] in ("running", "paused"):
        left = max(0.0, evidence["window_s"] - evidence["elapsed_s"])
        lines.append(
            f"{'guard' if evidence.get('mode') == 'guard' else 'analysis'} at {evidence['weight']:g}: "
            f"{evidence['elapsed_s']:.0f}/{evidence['window_s']:g} s, "
            f"{left:.0f} s left in the window (cap {evidence['max_window_s']:g} s); "
            f"canary {evidence['candidate']['requests']:.0f}/{evidence['min_requests']} requests, "
            f"{evidence['candidate']['feedback']:.0f}/{evidence['min_feedback']} feedback; "
            f"stable {evidence['stable']['requests']:.0f} requests"
        )
        for gate in evidence.get("gates", []):
            said = gate.get("verdict", "pass" if gate["passed"] else "fail")
            lines.append(f"  {said} {gate['name']}: {gate['reason']}")
    for record in state.get("records", []):
        lines.append(f"  {record['stage']}: {'pass' if record['passed'] else 'FAIL'}")
    if state["status"] in ("running", "paused", "rolling_back") and not alive:
        lines.append(
            "the controller is gone: the route serves the weight above (stable plus a strategy step, never a "
            "half state); `rollout resume` continues from this step, `rollout abort` restores stable"
        )
    if state.get("reason"):
        lines.append(f"reason: {state['reason']}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from rollout import runstate

    store = runstate.Store(state_dir(args))
    state = store.load()
    if not state:
        print(f"no rollout in {store.dir}")
        return EXIT_OK
    alive = store.controller_alive()
    if args.json:
        print(json.dumps({**state, "controller_alive": alive}, indent=2))
    else:
        print(describe(state, alive, time.time()))
    return EXIT_OK


def _active(store) -> dict[str, Any]:
    from rollout.runstate import ACTIVE

    state = store.load()
    if not state:
        raise UsageError(f"no rollout in {store.dir}")
    if state["status"] not in ACTIVE:
        raise UsageError(f"rollout {state['id']} already finished: {state['status']}")
    return state


def cmd_pause(args: argparse.Namespace) -> int:
    from rollout import ledger, runstate

    store = runstate.Store(state_dir(args))
    state = _active(store)
    if store.controller_alive():
        store.request("pause", ledger.actor())
        print(f"asked the controller to pause {state['id']} (it holds at the next step boundary)")
        return EXIT_OK
    store.acquire()
    try:
        state = _active(store)
        state["status"] = "paused" if state["status"] == "running" else state["status"]
        store.save(state)
        ledger.Ledger(store.ledger_path).append("pause", state["id"], {}, f"paused by {ledger.actor()}")
    finally:
        store.release()
    print(f"{state['id']} paused (no controller runs; `rollout resume` continues)")
    return EXIT_OK


def _drive_existing(args: argparse.Namespace, request: str | None) -> int:
    from rollout import engine, ledger, runstate

    store = runstate.Store(state_dir(args))
    state = _active(store)
    if store.controller_alive():
        if request:
            store.request(request, ledger.actor())
            print(f"asked the running controller: {request}")
            return EXIT_OK
        _err(f"a controller already drives {state['id']}")
        return EXIT_FAILED
    if request in ("promote", "promote_full"):
        store.request(request, ledger.actor())  # the controller we become takes it on its first poll
    eng = build_engine(state["settings"], store, state["skip_analysis"])
    try:
        state = eng.resume()
    except (engine.Refused, runstate.Busy) as exc:
        _err(str(exc))
        return EXIT_FAILED
    return _outcome(state)


def cmd_resume(args: argparse.Namespace) -> int:
    return _drive_existing(args, "resume")


def cmd_promote(args: argparse.Namespace) -> int:
    return _drive_existing(args, "promote_full" if args.full else "promote")


def cmd_abort(args: argparse.Namespace) -> int:
    from rollout import engine, ledger, runstate

    store = runstate.Store(state_dir(args))
    state = _active(store)
    reason = f"aborted by {ledger.actor()}" + (f": {args.reason}" if args.reason else "")
    if store.controller_alive():
        store.request("abort", ledger.actor())
        print(f"asked the controller of {state['id']} to abort; waiting for its rollback")
        deadline = time.monotonic() + args.timeout
        while store.controller_alive():
            if time.monotonic() > deadline:
                _err(f"the controller did not finish its rollback within {args.timeout:.0f} s")
                return EXIT_FAILED
            time.sleep(1)
        state = store.load()
        if state["status"] in runstate.ACTIVE:  # it died during the rollback: finish it here
            return cmd_abort(args)
        return EXIT_OK if state["status"] == "rolled_back" else _outcome(state)
    eng = build_engine(state["settings"], store, state["skip_analysis"])
    try:
        state = eng.abort(reason)
    except (engine.Refused, runstate.Busy) as exc:
        _err(str(exc))
        return EXIT_FAILED
    print(f"{state['version']}: rolled back; {state['stable'] or 'nothing'} serves production")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from rollout import ledger, runstate

    store = runstate.Store(state_dir(args))
    try:
        entries = ledger.Ledger(store.ledger_path).verify()
    except ledger.LedgerTampered as exc:
        _err(f"ledger tampered: {exc}")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(entries, indent=2))
        return EXIT_OK
    for e in entries:
        changes = ", ".join(
            f"{k} {v[0]}→{v[1]}" if isinstance(v, list) else f"{k}={v}" for k, v in e["changes"].items()
        )
        commit = f" commit {e['commit'][:12]}" if e.get("commit") else ""
        print(f"{e['seq']:>4} {e['time']} {e['actor']} {e['event']:<8} {changes} - {e['reason']}{commit}")
    print(f"{len(entries)} entries; hash chain verified ({store.ledger_path})")
    return EXIT_OK


def plan_text(settings: dict[str, Any], version: str, skip_analysis: bool) -> str:
    import dataclasses

    from rollout import aliases, gates, strategy

    strat = strategy.load(settings.get("strategy"), skip_analysis=skip_analysis)
    backend = settings["backend"] + (
        " (GitOps: commits to the desired-state repo, ArgoCD applies)"
        if settings["backend"] == "kubernetes"
        else " (Ray Serve on this machine)"
    )
    stable = "<production>"
    if settings.get("registry"):
        try:
            stable = aliases.read(settings["registry"])["aliases"]["production"] or "none (first model)"
        except Exception:
            stable = "<production>"
    v, t = version, strat.thresholds
    s = strat.staging
    lines = [
        f"plan: roll out {v} (stable {stable}) on backend {backend}; target {strat.target}",
        f"strategy: {json.dumps(strat.raw['steps'])}"
        + (" --skip-analysis: canary analysis steps dropped (recorded)" if skip_analysis else ""),
        "nothing is touched by this plan.",
        "",
    ]
    for i, a in enumerate(strat.actions, start=1):
        lines.append(f"{i}. {a.label}")
        if a.kind == "staging":
            lines += [
                f"   registry: alias staging → {v}",
                f"   backend.deploy(staging, {v}); "
                f"backend.wait_serving(staging, {v}, {strat.serving_timeout_s:g} s)",
                "   checks at backend.url(staging):",
                "     smoke: /healthz and /version name the candidate, /predict answers, "
                "a malformed body gets 4xx, /feedback accepts",
                "     offline_eval: card's test split through /predict, "
                f"within {s['card_tolerance']} of the card, accuracy >= {s['min_accuracy']}",
                "     champion: production scored on the same split through backend.url(production); "
                f"candidate at most {s['champion_tolerance']} below it",
                f"     load_test: {s['load_seconds']:g} s at concurrency {s['concurrency']}, "
                f"0 failures, p99 <= {s['slo_p99_ms']:g} ms",
                "   any failure: roll back",
            ]
            if strat.target == "production":
                lines.append("   backend.remove(staging)")
        elif a.kind == "canary_deploy":
            lines += [
                f"   registry: alias canary → {v}",
                f"   backend.deploy(canary, {v}); backend.wait_serving(canary, {v})",
                "   (skipped for the first model: no stable to compare with)",
            ]
        elif a.kind == "weight":
            lines.append(
                f"   backend.set_split({stable}, {v}, {a.weight:g}); backend.wait_split({a.weight:g})"
            )
        elif a.kind == "analysis":
            decides = (
                f"   after {a.window_s:g} s the gates decide: pass → next step; fail → roll back; "
                f"inconclusive → window extended up to {a.max_window_s:g} s, then roll back"
                if a.mode == "verdict"
                else f"   after {a.window_s:g} s: a failed gate → roll back; once each side has the "
                f"minimum evidence and no gate fails → next step; short of it at {a.max_window_s:g} s → "
                "roll back"
            )
            lines += [
                f"   every {a.interval_s:g} s: evidence from backend.prometheus_url() "
                "(canary vs production since the weight applied)",
                decides,
                f"   gates: {', '.join(g.__name__.removesuffix('_gate') for g in gates.GATES)} "
                "(rollout/gates.py; docs/rollout.md, Canary gates)",
                f"   thresholds: {json.dumps(dataclasses.asdict(t))}",
            ]
        elif a.kind == "pause":
            lines.append(
                "   hold until `rollout promote`"
                if a.pause_s is None
                else f"   hold {a.pause_s:g} s (`rollout promote` ends it early)"
            )
        elif a.kind == "promote":
            lines += [
                f"   backend.set_split({stable}, {v}, 1.0); backend.wait_split(1.0)   "
                "(the candidate takes the route)",
                f"   backend.deploy(production, {v}); backend.wait_serving(production, {v})",
                f"   registry: production → {v}, previous → {stable} (expecting production = {stable})",
                f"   backend.set_split({v}, {v}, 0.0); backend.wait_split(0.0); "
                f"drain {strat.drain_s:g} s; backend.remove(canary)",
            ]
    if strat.target == "staging":
        lines.append(
            "stops after staging: the candidate stays staged, production and its aliases are not touched"
        )
    lines += [
        "",
        f"on any failure or `rollout abort`: production serves {stable} (backend.deploy if it changed), "
        f"backend.set_split({stable}, …, 0.0), candidates removed, aliases restored",
    ]
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    from rollout import strategy

    if bool(args.inventory) == bool(args.settings):
        raise UsageError("plan needs exactly one of --inventory DIR or --settings FILE")
    settings = inventory_settings(args.inventory) if args.inventory else read_settings(args.settings)
    refusal = _inventory_refusal(args.inventory) if args.inventory else settings.get("refuse")
    if refusal:
        _err(f"refused: {refusal}")
        return EXIT_FAILED
    try:
        print(plan_text(settings, args.version, args.skip_analysis))
    except strategy.StrategyError as exc:
        raise UsageError(f"strategy: {exc}") from None
    return EXIT_OK


def _inventory_refusal(inventory: str) -> str | None:
    merged: dict[str, Any] = {}
    for path in sorted((Path(inventory) / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged.get("rollout_refuse") or None


def cmd_rollback(args: argparse.Namespace) -> int:
    from rollout import rollback_to, runstate

    settings = read_settings(args.settings)
    store = runstate.Store(state_dir(args))
    try:
        version = rollback_to.run(settings, store, args.to, args.reason)
    except rollback_to.NotFound as exc:
        raise UsageError(str(exc)) from None
    except rollback_to.RollbackFailed as exc:
        _err(str(exc))
        return EXIT_FAILED
    except runstate.Busy as exc:
        _err(str(exc))
        return EXIT_FAILED
    print(f"production serves {version}")
    return EXIT_OK


# ---- wiring --------------------------------------------------------------------------------------------
def register(subparsers) -> None:
    """Add the `rollout` command group (the `chiops` console script composes it)."""
    top = subparsers.add_parser("rollout", help="roll a model version out through gates", description=__doc__)
    add_verbs(top.add_subparsers(dest="verb", required=True))


def _handler(func):
    """handler(args) -> exit code, whatever it raises (the CLI contract: `chiops` calls these directly)."""

    def handle(args: argparse.Namespace) -> int:
        from rollout.backend import BackendError
        from rollout.prometheus import PrometheusError

        try:
            return func(args)
        except UsageError as exc:
            _err(str(exc))
            return EXIT_USAGE
        except (BackendError, PrometheusError, OSError) as exc:
            _err(f"failed: {exc}")
            return EXIT_FAILED

    return handle


def add_verbs(sub) -> None:
    def where(p: argparse.ArgumentParser, settings: bool = False) -> None:
        p.add_argument(
            "--state-dir", help=f"rollout directory (default $CHIOPS_ROLLOUT_DIR or {DEFAULT_STATE_DIR})"
        )
        p.add_argument("--settings", required=settings, help="settings JSON written by playbooks/rollout.yml")

    s = sub.add_parser("start", help="start a rollout and drive it to the end")
    where(s, settings=True)
    s.add_argument("--version", required=True, help="registered version, e.g. v2")
    s.add_argument(
        "--skip-analysis", action="store_true", help="no canary analysis (recorded in state, ledger, report)"
    )
    s.add_argument("--report-dir", help="report directory (default <reports_dir>/<rollout id>)")
    s.set_defaults(func=_handler(cmd_start))

    st = sub.add_parser("status", help="current step, weights, gate values so far, time left")
    where(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_handler(cmd_status))

    for name, func, text in (
        ("pause", cmd_pause, "hold at the next step boundary"),
        (
            "resume",
            cmd_resume,
            "continue a paused or interrupted rollout (becomes its controller if none runs)",
        ),
    ):
        p = sub.add_parser(name, help=text)
        where(p)
        p.set_defaults(func=_handler(func))

    pr = sub.add_parser(
        "promote", help="end the current analysis/pause step now, or --full: go to production"
    )
    where(pr)
    pr.add_argument("--full", action="store_true")
    pr.set_defaults(func=_handler(cmd_promote))

    ab = sub.add_parser(
        "abort", help="roll back now: stable serves 100%%, candidates removed, aliases restored"
    )
    where(ab)
    ab.add_argument("--reason", default="")
    ab.add_argument("--timeout", type=float, default=900, help="how long to wait for a running controller")
    ab.set_defaults(func=_handler(cmd_abort))

    h = sub.add_parser("history", help="the ledger of alias moves and weight changes, verified")
    where(h)
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=_handler(cmd_history))

    pl = sub.add_parser("plan", help="dry run: every step, gate, threshold and backend call; touches nothing")
    pl.add_argument("--inventory", help="inventory directory, e.g. inventories/production")
    pl.add_argument("--settings", help="settings JSON instead of an inventory")
    pl.add_argument("--version", required=True)
    pl.add_argument("--skip-analysis", action="store_true")
    pl.set_defaults(func=_handler(cmd_plan))

    rb = sub.add_parser("rollback", help="restore what served production at a version or time")
    where(rb, settings=True)
    rb.add_argument(
        "--to", required=True, help="a version (v3), `previous`, or a UTC time (2026-12-01T21:00:00Z)"
    )
    rb.add_argument("--reason", default="")
    rb.set_defaults(func=_handler(cmd_rollback))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit 2, with our prefix
        self.print_usage(sys.stderr)
        _err(message)
        sys.exit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m rollout", description=__doc__)
    add_verbs(p.add_subparsers(dest="verb", required=True, parser_class=_Parser))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)
