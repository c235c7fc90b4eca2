"""The rollout state machine, shared by every backend: staging → canary steps → production, or rollback.

Each numbered action of the strategy (rollout/strategy.py) runs to completion, then the state is saved with
the next action's number; every action is idempotent, so a controller that died mid-action re-runs it on
`resume`. Intent is saved before each backend call (the weight being set, the environment being deployed), so
`abort` after a kill knows everything that may have changed and restores stable: production serves the stable
version, the route sends it 100 %, candidate environments are removed, aliases are back to what they were.

Clock and sleep are injected: the step logic runs instantly in unit tests with a fake backend.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollout import aliases, gates, report
from rollout import state as state_metric
from rollout.backend import Backend, BackendError, Change
from rollout.ledger import Ledger
from rollout.runstate import ACTIVE, Store
from rollout.strategy import Action, Strategy


class GateFailed(Exception):
    """A gate decided against the candidate (the engine rolls back)."""


class Aborted(Exception):
    """`rollout abort` was requested while the controller ran."""


class Refused(Exception):
    """The request cannot start (exit 1 with this reason, nothing touched)."""


@dataclasses.dataclass
class Evidence:
    """Where the gates' sides come from: Prometheus in production use (PrometheusEvidence)."""

    measure: Callable[[str, str, str, float], gates.Side]
    series: Callable[[str, str, float, float], dict]


def prometheus_evidence(url: str) -> Evidence:
    from rollout import measure
    from rollout.prometheus import Prometheus

    def side(env: str, version: str, window: str, now: float) -> gates.Side:
        with Prometheus(url) as prom:
            return measure.measure(prom, env, version, window, now)

    def series(env: str, version: str, start: float, end: float) -> dict:
        with Prometheus(url) as prom:
            return measure.series(prom, env, version, start, end)

    return Evidence(side, series)


def default_staging_check(
    url: str, champion_url: str | None, registry: str, version: str, settings: dict
) -> tuple[bool, dict]:
    from rollout import staging

    return staging.run(
        url=url,
        champion_url=champion_url,
        champion_tolerance=float(settings["champion_tolerance"]),
        registry=Path(registry),
        model_version=version,
        slo_p99_ms=float(settings["slo_p99_ms"]),
        min_accuracy=float(settings["min_accuracy"]),
        card_tolerance=float(settings["card_tolerance"]),
        load_seconds=float(settings["load_seconds"]),
        concurrency=int(settings["concurrency"]),
    )


def _pct(weight: float) -> str:
    return f"{weight * 100:g}%"


class Engine:
    def __init__(
        self,
        store: Store,
        backend: Backend,
        strategy: Strategy,
        registry: str,
        evidence: Evidence,
        staging_check: Callable[..., tuple[bool, dict]] = default_staging_check,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        out: Callable[[str], None] = lambda line: print(line, flush=True),
        textfile: Path | None = None,
    ) -> None:
        self.store = store
        self.backend = backend
        self.strategy = strategy
        self.registry = registry
        self.evidence = evidence
        self.staging_check = staging_check
        self.clock = clock
        self.sleep = sleep
        self.out = out
        self.textfile = textfile
        self.ledger = Ledger(store.ledger_path, clock)
        self.state: dict[str, Any] = {}

    # ---- bookkeeping ---------------------------------------------------------------------------------
    def save(self) -> None:
        self.store.save(self.state)

    def _metric(self, stage: str) -> None:
        if self.textfile:
            state_metric.write(self.textfile, self.state["version"], stage, float(self.state["weight"]))

    def _record_change(self, event: str, change: Change | None, changes: dict, reason: str, evidence=None):
        self.ledger.append(
            event,
            self.state.get("id"),
            changes,
            reason,
            evidence=evidence,
            commit=change.commit if change else None,
        )

    def _move_aliases(self, moves: dict, reason: str, expect: dict | None = None) -> dict:
        changes = aliases.move(self.registry, moves, reason, expect)
        if changes:
            self._record_change("alias", None, changes, reason)
        return changes

    def _deploy(self, env: str, version: str, reason: str) -> None:
        self.state["deployed"][env] = version  # intent first: a kill mid-deploy is still cleaned up
        self.save()
        change = self.backend.deploy(env, version)
        self._record_change("deploy", change, {env: version}, reason)
        self.backend.wait_serving(env, version, self.strategy.serving_timeout_s, self.out)

    def _split(self, stable: str, candidate: str | None, weight: float, reason: str, evidence=None) -> None:
        self.state["weight_pending"] = weight
        self.save()
        change = self.backend.set_split(stable, candidate, weight)
        self._record_change(
            "weight", change, {"canary_weight": [self.state["weight"], weight]}, reason, evidence
        )
        self.backend.wait_split(weight, self.strategy.split_timeout_s, self.out)
        self.state["weight"] = weight
        self.state["weight_pending"] = None
        self.save()

    def _remove(self, env: str, reason: str) -> None:
        change = self.backend.remove(env)
        self._record_change("remove", change, {env: None}, reason)
        self.state["deployed"].pop(env, None)
        self.save()

    def _note(self, line: str) -> None:
        self.state.setdefault("log", []).append(
            f"{time.strftime('%H:%M:%S', time.gmtime(self.clock()))} {line}"
        )
        self.out(line)

    # ---- starting ------------------------------------------------------------------------------------
    def new_state(self, version: str, settings: dict, skip_analysis: bool, report_dir: str | None) -> dict:
        reg = aliases.read(self.registry)
        if version not in reg["versions"]:
            raise Refused(f"{version} is not registered in {self.registry}")
        stable = reg["aliases"]["production"]
        if version == stable:
            raise Refused(f"{version} already serves production")
        now = self.clock()
        rollout_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + f"-{version}"
        return {
            "id": rollout_id,
            "version": version,
            "stable": stable,
            "aliases_before": reg["aliases"],
            "status": "running",
            "step": 0,
            "phase": None,
            "actions": [a.to_dict() for a in self.strategy.actions],
            "target": self.strategy.target,
            "weight": 0.0,
            "weight_pending": None,
            "deployed": {},
            "production": stable,
            "window_start": None,
            "pause_start": None,
            "evidence": None,
            "records": [],
            "skip_analysis": skip_analysis,
            "settings": settings,
            "started": round(now, 3),
            "reason": None,
            "report_dir": report_dir,
            "log": [],
        }

    def start(self, version: str, settings: dict, skip_analysis: bool = False, report_dir=None) -> dict:
        self.store.acquire()
        try:
            previous = self.store.load()
            if previous and previous["status"] in ACTIVE:
                raise Refused(
                    f"rollout {previous['id']} is {previous['status']} at step {previous['step'] + 1}: "
                    "`rollout status`, then `rollout resume` or `rollout abort`"
                )
            self.store.take_request()  # a request left for an earlier rollout is not for this one
            self.state = self.new_state(version, settings, skip_analysis, report_dir)
            self.save()
            self._record_change(
                "start",
                None,
                {"version": version, "stable": self.state["stable"]},
                "rollout started" + (" with --skip-analysis (no canary gates)" if skip_analysis else ""),
                evidence={"skip_analysis": skip_analysis, "strategy": self.strategy.raw},
            )
            return self._drive()
        finally:
            self.store.release()

    def resume(self) -> dict:
        self.store.acquire()
        try:
            self.state = self._load_active()
            if self.state["status"] == "paused":
                self.state["status"] = "running"
            self._note(f"resumed at step {self.state['step'] + 1} ({self.state['status']})")
            self.save()
            return self._drive()
        finally:
            self.store.release()

    def abort(self, reason: str) -> dict:
        """Roll back now (no controller may be running: the caller asked it to stop, or it is dead)."""
        self.store.acquire()
        try:
            self.state = self._load_active()
            self._rollback(reason)
            return self.state
        finally:
            self.store.release()

    def _load_active(self) -> dict:
        state = self.store.load()
        if not state:
            raise Refused(f"no rollout in {self.store.dir}")
        if state["status"] not in ACTIVE:
            raise Refused(f"rollout {state['id']} already finished: {state['status']}")
        return state

    # ---- driving -------------------------------------------------------------------------------------
    def _actions(self) -> list[Action]:
        return [Action.from_dict(a) for a in self.state["actions"]]

    def _drive(self) -> dict:
        try:
            if self.state["status"] == "rolling_back":
                self._rollback(self.state["reason"] or "rollback interrupted; resumed")
                return self.state
            actions = self._actions()
            while self.state["step"] < len(actions):
                self._hold_while_paused()
                action = actions[self.state["step"]]
                self._note(f"step {self.state['step'] + 1}/{len(actions)}: {action.label}")
                self._run(action)
                self.state["step"] += 1
                self.state["phase"] = None
                self.save()
            self._finish()
        except (GateFailed, BackendError, Aborted, OSError, ValueError) as exc:
            kind = {GateFailed: "gate failed", Aborted: "aborted"}.get(type(exc), "failed")
            self._rollback(f"{kind}: {exc}")
        return self.state

    def _poll(self) -> str | None:
        request = self.store.take_request()
        if not request:
            return None
        what = request["request"]
        self._note(f"request {what} from {request.get('actor')}")
        if what == "abort":
            raise Aborted(f"requested by {request.get('actor')}")
        if what == "pause":
            self.state["status"] = "paused"
            self._record_change("pause", None, {}, f"paused by {request.get('actor')}")
            self.save()
        elif what == "resume" and self.state["status"] == "paused":
            self.state["status"] = "running"
            self._record_change("resume", None, {}, f"resumed by {request.get('actor')}")
            self.save()
        elif what in ("promote", "promote_full"):
            self.state["status"] = "running"
            self.state["promote_request"] = {"full": what == "promote_full", "actor": request.get("actor")}
            self.save()
        return what

    def _wait(self, seconds: float) -> None:
        """Sleep in slices of at most 1 s, acting on requests between them."""
        end = self.clock() + seconds
        while True:
            self._poll()
            left = end - self.clock()
            if left <= 0:
                return
            self.sleep(min(1.0, left))

    def _hold_while_paused(self) -> None:
        announced = False
        while True:
            self._poll()
            if self.state["status"] != "paused":
                return
            if not announced:
                self._note(f"paused before step {self.state['step'] + 1}; `rollout resume` continues")
                self._metric("canary" if self.state["weight"] > 0 else "staging")
                announced = True
            self.sleep(1.0)

    def _take_promote(self) -> dict | None:
        request = self.state.pop("promote_request", None)
        if request:
            self.save()
        return request

    def _skip_to_promotion(self, request: dict) -> None:
        """`promote --full`: the remaining weight/analysis/pause steps are skipped (recorded)."""
        actions = self._actions()
        promote_at = next(i for i, a in enumerate(actions) if a.kind == "promote")
        skipped = [a.label for a in actions[self.state["step"] : promote_at]]
        self._record_change(
            "skip", None, {"skipped": skipped}, f"promote --full by {request.get('actor')}: steps skipped"
        )
        self.state["step"] = promote_at - 1  # _drive's += 1 lands on promotion
        self.state["records"].append(
            {
                "stage": "promote-full",
                "passed": True,
                "reasons": [],
                "checks": [
                    {
                        "name": "manual_promotion",
                        "passed": True,
                        "measured": {"skipped": len(skipped)},
                        "threshold": {},
                        "reason": f"promote --full by {request.get('actor')} skipped: {'; '.join(skipped)}",
                    }
                ],
            }
        )

    def _run(self, action: Action) -> None:
        handler = getattr(self, f"_do_{action.kind}")
        handler(action)

    # ---- actions -------------------------------------------------------------------------------------
    def _do_staging(self, action: Action) -> None:
        version = self.state["version"]
        self._metric("staging")
        self._move_aliases({"staging": version}, "rollout: staging")
        self._deploy("staging", version, "rollout: staging")
        passed, record = self.staging_check(
            self.backend.url("staging"),
            self.backend.url("production") if self.state["stable"] else None,
            self.registry,
            version,
            dict(self.strategy.staging),
        )
        self.state["records"].append(record)
        self.save()
        for check in record["checks"]:
            self.out(f"  {'PASS' if check['passed'] else 'FAIL'} staging {check['name']}: {check['reason']}")
        if not passed:
            raise GateFailed("staging: " + "; ".join(record["reasons"]))
        if self.strategy.target == "production":
            self._remove("staging", "rollout: staging checks passed")

    def _first_model(self) -> bool:
        return self.state["stable"] is None

    def _do_canary_deploy(self, action: Action) -> None:
        if self._first_model():
            self._note("first production model: no stable version to canary against (staging gates only)")
            return
        self._move_aliases({"canary": self.state["version"]}, "rollout: canary")
        self._deploy("canary", self.state["version"], "rollout: canary (weight 0)")

    def _do_weight(self, action: Action) -> None:
        if self._first_model():
            return
        request = self._take_promote()
        if request and request["full"]:
            self._skip_to_promotion(request)
            return
        self._metric("canary")
        self._split(
            self.state["stable"],
            self.state["version"],
            action.weight,
            f"rollout: step to {_pct(action.weight)}",
        )
        self._metric("canary")
        self.state["window_start"] = None

    def _do_pause(self, action: Action) -> None:
        if self._first_model():
            return
        if self.state["pause_start"] is None:
            self.state["pause_start"] = self.clock()
            self.save()
        while True:
            request = self._take_promote()
            if request:
                if request["full"]:
                    self._skip_to_promotion(request)
                self._record_change(
                    "promote", None, {}, f"pause ended by promote from {request.get('actor')}"
                )
                break
            if action.pause_s is not None and self.clock() - self.state["pause_start"] >= action.pause_s:
                break
            self._wait(1.0)
        self.state["pause_start"] = None

    def _do_analysis(self, action: Action) -> None:
        if self._first_model():
            return
        version, stable = self.state["version"], self.state["stable"]
        if self.state["window_start"] is None:
            self.state["window_start"] = self.clock()  # the weight already applies (wait_split returned)
            self.save()
        start = self.state["window_start"]
        t = self.strategy.thresholds
        while True:
            request = self._take_promote()
            if request:
                if request["full"]:
                    self._skip_to_promotion(request)
                else:
                    self._record_change(
                        "skip", None, {"skipped": [action.label]}, f"promote by {request.get('actor')}"
                    )
                self._analysis_record(action, None, start, self.clock(), "skipped by promote")
                return
            now = self.clock()
            elapsed = max(1.0, now - start)
            window = f"{math.ceil(elapsed)}s"
            candidate = self.evidence.measure("canary", version, window, now)
            stable_side = self.evidence.measure("production", stable, window, now)
            self.state["evidence"] = {
                "weight": action.weight,
                "mode": action.mode,
                "elapsed_s": round(elapsed, 1),
                "window_s": action.window_s,
                "max_window_s": action.max_window_s,
                "candidate": {
                    "requests": candidate.requests,
                    "errors": candidate.errors,
                    "feedback": candidate.feedback,
                },
                "stable": {
                    "requests": stable_side.requests,
                    "errors": stable_side.errors,
                    "feedback": stable_side.feedback,
                },
                "min_requests": t.min_requests,
                "min_feedback": t.min_feedback,
            }
            if elapsed >= action.window_s:
                decision = gates.decide(candidate, stable_side, t)
                result = gates.step_verdict(decision, action.mode)
                self.state["evidence"]["gates"] = decision.to_dict()["gates"]
                self.state["evidence"]["verdict"] = result
                self.save()
                if result == "pass":
                    self._analysis_record(action, decision, start, now, "pass")
                    self._note(
                        f"guard at {_pct(action.weight)} passed after {elapsed:.0f} s: no gate shows the "
                        "candidate worse"
                        if action.mode == "guard"
                        else f"analysis at {_pct(action.weight)} passed after {elapsed:.0f} s"
                    )
                    return
                if result == "fail" or elapsed >= action.max_window_s:
                    self._analysis_record(action, decision, start, now, result)
                    why = "; ".join(decision.reasons)
                    if result == "inconclusive":
                        why = f"still inconclusive at the {action.max_window_s:g} s cap: {why}"
                    raise GateFailed(f"canary at {_pct(action.weight)}: {why}")
                left = action.max_window_s - elapsed
                self.out(
                    f"  inconclusive after {elapsed:.0f} s, window extended ({left:.0f} s left to the cap)"
                )
            else:
                self.save()
                left = action.window_s - elapsed
                self.out(
                    f"  analysis at {_pct(action.weight)}: {elapsed:.0f}/{action.window_s:g} s "
                    f"({left:.0f} s left); "
                    f"canary {candidate.requests:.0f}/{t.min_requests} requests, "
                    f"{candidate.feedback:.0f}/{t.min_feedback} feedback, {candidate.errors:.0f} errors; "
                    f"stable {stable_side.requests:.0f} requests"
                )
            until_next = action.interval_s
            if elapsed < action.window_s:
                until_next = min(until_next, action.window_s - elapsed)
            self._wait(max(0.5, until_next))

    def _analysis_record(self, action: Action, decision, start: float, end: float, result: str) -> None:
        index = sum(1 for r in self.state["records"] if r["stage"].startswith("canary")) + 1
        try:
            chart = {
                "candidate": self.evidence.series("canary", self.state["version"], start, end),
                "stable": self.evidence.series("production", self.state["stable"], start, end),
            }
        except Exception as exc:  # the chart is decoration; the decision above stands
            self.out(f"  (no chart series: {exc})")
            chart = None
        record = {
            "stage": f"canary@{_pct(action.weight)}",
            "step": index,
            "passed": result in ("pass", "skipped by promote"),
            "verdict": result,
            "reasons": decision.reasons if decision else [],
            "checks": (
                decision.to_dict()["gates"]
                if decision
                else [
                    {
                        "name": "manual_promotion",
                        "passed": True,
                        "measured": {},
                        "threshold": {},
                        "reason": "analysis skipped by `rollout promote`",
                    }
                ]
            ),
            "window": f"{end - start:.0f}s",
            "weight": action.weight,
            "mode": action.mode,
            "window_start": start,
            "window_end": end,
            "candidate_version": self.state["version"],
            "stable_version": self.state["stable"],
            "thresholds": dataclasses.asdict(self.strategy.thresholds),
            "series": chart,
        }
        self.state["records"].append(record)
        self.save()
        for check in record["checks"]:
            self.out(
                f"  {'PASS' if check['passed'] else 'FAIL'} {record['stage']} "
                f"{check['name']}: {check['reason']}"
            )

    def _once(self, name: str, work: Callable[[], None]) -> None:
        """Run one part of a multi-call action once: a resumed action skips the parts already done."""
        done = self.state.get("phase") or []
        if name in done:
            return
        work()
        self.state["phase"] = [*done, name]
        self.save()

    def _do_promote(self, action: Action) -> None:
        version, stable = self.state["version"], self.state["stable"]
        self._metric("production")
        evidence = [r.get("verdict", "pass" if r["passed"] else "fail") for r in self.state["records"]]
        canary = not self._first_model()

        def production() -> None:
            self.state["production"] = version
            self._deploy("production", version, "rollout: promote")

        def registry() -> None:
            current = aliases.read(self.registry)["aliases"]
            if current["production"] == version:
                return
            moves: dict[str, str | None] = {"production": version, "previous": stable}
            for stage in ("canary", "staging"):
                if current[stage] == version:
                    moves[stage] = None
            self._move_aliases(moves, "rollout: gates passed", expect={"production": stable})

        def route_back() -> None:
            self._split(version, version, 0.0, "rollout: production serves the candidate")
            self.sleep(self.strategy.drain_s)

        # The candidate takes the whole route while production is replaced, so the public side never goes back
        # to the old model once the gates have passed.
        if canary:
            self._once(
                "full",
                lambda: self._split(
                    stable, version, 1.0, "rollout: promote, candidate takes 100 %", evidence
                ),
            )
        self._once("production", production)
        self._once("registry", registry)
        if canary:
            self._once("route_back", route_back)
        for env in ("canary", "staging"):
            if env in self.state["deployed"]:
                self._remove(env, "rollout: promoted")
        self.state["records"].append(
            {
                "stage": "production",
                "passed": True,
                "reasons": [],
                "checks": [
                    {
                        "name": "serving",
                        "passed": True,
                        "measured": {"production_version": version, "previous": stable},
                        "threshold": {"production_version": version},
                        "reason": f"production's newest generation serves {version} (/version checked)",
                    }
                ],
            }
        )

    # ---- ending --------------------------------------------------------------------------------------
    def _finish(self) -> None:
        if self.strategy.target == "staging":
            self.state["status"] = "staged"
            self.state["reason"] = "staging checks passed; target is staging, nothing promoted"
            self._metric("staging")
        else:
            self.state["status"] = "promoted"
            self.state["reason"] = (
                "first production model: staging gates passed, no stable to canary against"
                if self._first_model()
                else "all gates passed"
                + (" (canary analysis skipped: --skip-analysis)" if self.state["skip_analysis"] else "")
            )
            self._metric("promoted")
        self._record_change("finish", None, {"status": self.state["status"]}, self.state["reason"])
        self._note(f"{self.state['version']}: {self.state['status']} ({self.state['reason']})")
        self._report()

    def _rollback(self, reason: str) -> None:
        """Restore stable; every call is idempotent, so an interrupted rollback is re-run from the top."""
        self.state["status"] = "rolling_back"
        self.state["reason"] = self.state.get("reason") if self.state.get("reason") else reason
        self.save()
        self._note(f"rolling back: {reason}")
        version, stable = self.state["version"], self.state["stable"]
        deployed = self.state["deployed"]
        if stable is not None:
            if self.state["production"] != stable:
                self.state["production"] = stable
                self._deploy("production", stable, "rollback: production serves stable")
            if self.state["weight"] > 0 or self.state["weight_pending"] is not None or "canary" in deployed:
                self._split(stable, version if "canary" in deployed else None, 0.0, f"rollback: {reason}")
                self.sleep(self.strategy.drain_s)
        for env in ("canary", "staging"):
            if env in deployed:
                self._remove(env, "rollback")
        if stable is None and "production" in deployed:
            self._remove("production", "rollback: no stable version to serve")
        before = self.state["aliases_before"]
        current = aliases.read(self.registry)["aliases"]
        moves = {a: v for a, v in before.items() if current.get(a) != v}
        if moves:
            self._move_aliases(moves, f"rollback of {version}")
        self.state["status"] = "rolled_back"
        self.state["weight"] = 0.0
        self._metric("rolled_back")
        self._record_change("finish", None, {"status": "rolled_back"}, self.state["reason"])
        self._note(f"{version}: rolled back; {stable or 'nothing'} serves production")
        self._report()

    def _report(self) -> None:
        directory = self.state.get("report_dir")
        if not directory:
            reports = self.state["settings"].get("reports_dir") or str(self.store.dir / "reports")
            directory = str(Path(reports) / self.state["id"])
            self.state["report_dir"] = directory
        built = report.build(
            self.state["records"],
            self.state["version"],
            self.state["stable"],
            self.state["status"],
            self.state["reason"] or "",
            steps=self.state.get("log", []),
            skip_analysis=self.state["skip_analysis"],
        )
        self.state["report_files"] = [str(p) for p in report.write(Path(directory), built)]
        self.save()
