"""`chiops pipeline run`: decide, then the whole chain with no human step — snapshot the feedback store
(a data version), train on reference + feedback data and register (training's own validation and quality
gate), roll the new version out through staging (champion/challenger against production) and the canary
gates — and write a report: trigger, data version, candidate against production, decision and outcome.

Each step is a process of its own, the command a user would type (`python -m training.feedback_data`,
`python -m training train`, `python -m rollout start`): this process imports neither torch nor Ray, and a
step's exit code and output are its result. One run at a time per state directory (a lock); the run's line in
runs.jsonl (pipeline/history.py) carries cooldown, budget and hysteresis to the next decision.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline import history, signals
from pipeline.policy import REFUSE, RETRAIN, Decision, Policy, Signals, decide

Progress = Callable[[str], None]
ROOT = Path(__file__).resolve().parents[1]


class RunError(RuntimeError):
    """The run could not start (another run holds the lock, a source cannot be read); nothing was changed."""


@dataclasses.dataclass(frozen=True)
class Request:
    settings: str  # the rollout's settings file (playbooks/tasks/rollout_settings.yml): registry, backend
    config: str  # training config the retrain starts from (training/configs/*.yaml)
    feedback_store: str
    code_commit: str
    prometheus: str | None = None  # where the drift rule is read; None: drift not measured
    policy: Policy = dataclasses.field(default_factory=Policy)
    inventory: str | None = None  # the Chameleon lease the run must fit in; None: no lease
    extend: bool = False
    state_dir: Path | None = None  # default: <rollout state dir>/pipeline
    params: tuple[str, ...] = ()  # training config overrides, KEY=VALUE


def _step(argv: list[str], progress: Progress, what: str) -> subprocess.CompletedProcess:
    progress(f"pipeline: {what}")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in proc.stderr.splitlines()[-20:]:
        progress(f"  {line}")
    return proc


def _last_json(stdout: str, key: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and key in data:
            return data
    return None


def _lock(state_dir: Path):
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / "run.lock", "w")  # noqa: SIM115 - held for the whole run, closed by run()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RunError(f"another pipeline run holds {state_dir / 'run.lock'}") from None
    return handle


def _decide(req: Request, registry: str, runs: list[dict[str, Any]], now: float):
    card = signals.production_card(registry)
    observed = Signals(
        new_labels=signals.new_labels(req.feedback_store, card),
        drift=signals.live_drift(req.prometheus, version=card["version"]) if req.prometheus else None,
        drift_armed=history.drift_armed(runs),
        code_commit=req.code_commit,
        trained_commit=card.get("git_commit"),
        trainings=history.trainings(runs),
    )
    if req.inventory:
        from pipeline.lease import decide_within_lease

        return card, observed, decide_within_lease(req.policy, observed, req.inventory, req.extend, now)
    return card, observed, decide(req.policy, observed, None, now)


def _retrain(req: Request, registry: str, work: Path, progress: Progress) -> dict[str, Any]:
    """Snapshot → train + register → rollout; what each step gave, and the outcome."""
    py = sys.executable
    done: dict[str, Any] = {}
    snap = _step(
        [py, "-m", "training.feedback_data", "--store", req.feedback_store, "--out", str(work / "data")],
        progress,
        "snapshot the feedback store",
    )
    if snap.returncode != 0:
        return {"outcome": "failed", "failed_step": "snapshot", "error": snap.stderr.strip()[-500:]}
    done["feedback_data"] = snap.stdout.split()[0]
    params = [p for kv in (*req.params, f"data.feedback={done['feedback_data']}") for p in ("--param", kv)]
    done["trained"] = True  # counts against cooldown and budget whatever comes of the model
    train = _step(
        [
            py,
            "-m",
            "training",
            "train",
            "--config",
            req.config,
            *params,
            "--registry",
            registry,
            "--output",
            str(work / "train"),
            "--reason",
            "pipeline run",
        ],
        progress,
        f"train on {req.config} + feedback, then register",
    )
    registered = _last_json(train.stdout, "registered")
    if train.returncode != 0 or not registered or not registered.get("registered"):
        outcome = "not_registered" if registered else "failed"
        return {
            **done,
            "outcome": outcome,
            "failed_step": "train",
            "error": train.stderr.strip()[-500:],
            "gate": (registered or {}).get("gate"),
        }
    version = done["version"] = registered["registered"]
    rollout = _step(
        [
            py,
            "-m",
            "rollout",
            "start",
            "--settings",
            req.settings,
            "--version",
            version,
            "--report-dir",
            str(work / "rollout"),
        ],
        progress,
        f"roll {version} out through the gates",
    )
    # rollout start prints "<version>: <status> - <reason>" once the rollout has ended, whatever its outcome;
    # without that line it refused to start (another rollout active, say) and changed nothing
    ended = [line for line in rollout.stdout.splitlines() if line.startswith(f"{version}: ")]
    done["rollout"] = ended[-1] if ended else None
    done["outcome"] = ended[-1].split()[1] if ended else "failed"
    if rollout.returncode != 0:
        done["failed_step"] = "rollout"
        done["error"] = rollout.stderr.strip()[-500:]
    return done


def _compare(registry: str, production: dict[str, Any], version: str | None) -> dict[str, Any]:
    from model_registry import Registry

    keys = ("accuracy", "macro_f1")
    rows = {
        "production": {"version": production["version"], **{k: production["metrics"].get(k) for k in keys}}
    }
    if version:
        card = Registry(registry).card(version)
        rows["candidate"] = {
            "version": version,
            **{k: card["metrics"].get(k) for k in keys},
            "data": card.get("data", {}).get("versions", []),
        }
    return rows


def run(req: Request, progress: Progress = print, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """One pipeline run; returns its report (also written as report.json and report.md in its directory)."""
    from rollout.cli import UsageError, read_settings

    # the steps run in the repository; paths the user gave are relative to where they are
    req = dataclasses.replace(req, settings=os.path.abspath(req.settings), config=os.path.abspath(req.config))
    settings = read_settings(req.settings)
    registry = settings["registry"]
    if not (req.state_dir or settings.get("state_dir")):
        raise UsageError(f"settings {req.settings} name no state_dir: give --state-dir")
    state_dir = Path(req.state_dir or Path(settings["state_dir"]) / "pipeline").resolve()
    lock = _lock(state_dir)
    try:
        runs = history.read(state_dir)
        now = clock()
        try:
            card, observed, decision = _decide(req, registry, runs, now)
        except signals.SignalError as exc:
            raise RunError(str(exc)) from None
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        work = state_dir / run_id
        work.mkdir(parents=True, exist_ok=True)
        progress(f"pipeline: {decision.action} (triggers: {', '.join(decision.triggers) or 'none'})")
        for reason in decision.reasons:
            progress(f"  - {reason}")
        steps = (
            _retrain(req, registry, work, progress)
            if decision.action == RETRAIN
            else {"outcome": "refused" if decision.action == REFUSE else "skipped"}
        )
        report = {
            "run": run_id,
            "time": now,
            "signals": dataclasses.asdict(observed),
            "decision": decision.to_dict(),
            **steps,
            "models": _compare(registry, card, steps.get("version")),
        }
        _write_report(work, report)
        history.append(state_dir, _record(report, decision))
        progress(f"pipeline: {report['outcome']} (report: {work / 'report.md'})")
        return report
    finally:
        lock.close()


def _record(report: dict[str, Any], decision: Decision) -> dict[str, Any]:
    return {
        "time": report["time"],
        "run": report["run"],
        "action": decision.action,
        "triggers": list(decision.triggers),
        "trained": bool(report.get("trained")),
        "drift_armed": decision.drift_armed,
        "version": report.get("version"),
        "outcome": report["outcome"],
    }


def _write_report(work: Path, report: dict[str, Any]) -> None:
    (work / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    d = report["decision"]
    lines = [
        f"# Pipeline run {report['run']}: {report['outcome']}",
        "",
        f"Decision: **{d['action']}** (triggers: {', '.join(d['triggers']) or 'none'})",
        "",
        *[f"- {r}" for r in d["reasons"]],
        "",
    ]
    if report.get("feedback_data"):
        lines += [f"Data: reference + feedback snapshot `{report['feedback_data']}`", ""]
    lines += ["| model | version | test accuracy | macro-F1 |", "|---|---|---|---|"]
    for role, row in report["models"].items():
        acc, f1 = row.get("accuracy"), row.get("macro_f1")
        lines.append(
            f"| {role} | {row['version']} | {acc if acc is None else f'{acc:.4f}'} | "
            f"{f1 if f1 is None else f'{f1:.4f}'} |"
        )
    if report.get("error"):
        lines += [
            "",
            f"Failed at `{report.get('failed_step', 'rollout')}`:",
            "",
            "```",
            report["error"],
            "```",
        ]
    (work / "report.md").write_text("\n".join(lines) + "\n")
