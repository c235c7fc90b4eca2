"""`python -m rollout <command>`: the gate steps the rollout playbooks call (both backends)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rollout import gates, measure, report, state
from rollout.prometheus import Prometheus, PrometheusError

EXIT_GATE_FAILED = 2


def _thresholds(args: argparse.Namespace) -> gates.Thresholds:
    values = json.loads(args.thresholds) if args.thresholds else {}
    return gates.Thresholds.from_mapping(values)


def _window(args: argparse.Namespace, now: float) -> str:
    """`--window since-start`: everything since the canary took traffic (the window may have been extended)."""
    if args.window != "since-start":
        return args.window
    if not args.window_start:
        raise ValueError("--window since-start needs --window-start")
    return f"{max(1, int(now - args.window_start))}s"


def cmd_canary(args: argparse.Namespace) -> int:
    thresholds = _thresholds(args)
    with Prometheus(args.prometheus) as prom:
        now = time.time()
        args.window = _window(args, now)
        candidate = measure.measure(prom, args.candidate_env, args.candidate_version, args.window, now)
        stable = measure.measure(prom, args.stable_env, args.stable_version, args.window, now)
        decision = gates.decide(candidate, stable, thresholds)
        start = args.window_start if args.window_start else now - float(args.window.rstrip("s"))
        chart = {
            "candidate": measure.series(prom, args.candidate_env, args.candidate_version, start, now),
            "stable": measure.series(prom, args.stable_env, args.stable_version, start, now),
        }
    record = {
        "stage": "canary",
        "passed": decision.promote,
        "reasons": decision.reasons,
        "checks": [c for c in decision.to_dict()["gates"]],
        "window": args.window,
        "weight": args.weight,
        "window_start": start,
        "window_end": now,
        "candidate_version": args.candidate_version,
        "stable_version": args.stable_version,
        "thresholds": thresholds.__dict__,
        "series": chart,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    for check in decision.gates:
        print(f"{'PASS' if check.passed else 'FAIL'} {check.name}: {check.reason}")
    if not decision.promote:
        print("canary rejected: " + "; ".join(decision.reasons), file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Sleep one slice of the analysis window, then print how much evidence has come in (progress)."""
    time.sleep(args.seconds)
    with Prometheus(args.prometheus) as prom:
        now = time.time()
        side = measure.measure(prom, args.candidate_env, args.candidate_version, _window(args, now), now)
    print(
        f"{args.candidate_env} {args.candidate_version} so far: {side.requests:.0f} requests, "
        f"{side.errors:.0f} errors, {side.feedback:.0f} feedback"
    )
    return 0


def cmd_evidence(args: argparse.Namespace) -> int:
    """Extend the window while the gates' verdict is inconclusive, up to the maximum (then the canary step rejects)."""
    thresholds = _thresholds(args)
    with Prometheus(args.prometheus) as prom:
        while True:
            now = time.time()
            window = _window(args, now)
            side = measure.measure(prom, args.candidate_env, args.candidate_version, window, now)
            stable = measure.measure(prom, args.stable_env, args.stable_version, window, now)
            decision = gates.decide(side, stable, thresholds)
            still_open = [g.name for g in decision.gates if g.verdict == "inconclusive"]
            print(
                f"{window}: {decision.verdict}; {side.requests:.0f} requests, {side.feedback:.0f} feedback"
                + (f"; waiting on {', '.join(still_open)}" if decision.verdict == "inconclusive" else ""),
                flush=True,
            )
            if decision.verdict != "inconclusive" or now - args.window_start >= args.max_seconds:
                return 0  # the canary step takes the decision (inconclusive at the cap rejects)
            time.sleep(5)


def cmd_report(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    built = report.build(
        directory, args.model_version, args.stable_version or None, args.outcome, args.reason
    )
    for path in report.write(directory, built):
        print(path)
    return 0


def cmd_state(args: argparse.Namespace) -> int:
    state.write(Path(args.file), args.model_version, args.stage, args.weight)
    return 0


def cmd_exporter(args: argparse.Namespace) -> int:
    from rollout import textfile_exporter

    host, _, port = args.listen.rpartition(":")
    textfile_exporter.serve(Path(args.dir), host, int(port))
    return 0


def cmd_staging(args: argparse.Namespace) -> int:
    from rollout import staging

    passed, record = staging.run(
        url=args.url,
        registry=Path(args.registry),
        model_version=args.model_version,
        slo_p99_ms=args.slo_p99_ms,
        min_accuracy=args.min_accuracy,
        card_tolerance=args.card_tolerance,
        load_seconds=args.load_seconds,
        concurrency=args.concurrency,
        champion_url=args.champion_url or None,
        champion_tolerance=args.champion_tolerance,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    for check in record["checks"]:
        print(f"{'PASS' if check['passed'] else 'FAIL'} {check['name']}: {check['reason']}")
    if not passed:
        print("staging rejected: " + "; ".join(record["reasons"]), file=sys.stderr)
        return EXIT_GATE_FAILED
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rollout", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def sides(s: argparse.ArgumentParser) -> None:
        s.add_argument("--prometheus", required=True, help="base URL of the Prometheus HTTP API")
        s.add_argument("--candidate-env", default="canary")
        s.add_argument("--candidate-version", required=True)
        s.add_argument("--window", required=True, help="Prometheus duration, e.g. 90s, or since-start")

    c = sub.add_parser("canary", help="gate the canary against stable over the analysis window")
    sides(c)
    c.add_argument("--stable-env", default="production")
    c.add_argument("--stable-version", required=True)
    c.add_argument("--window-start", type=float, default=None, help="unix time the canary took traffic")
    c.add_argument("--weight", type=float, default=0.1)
    c.add_argument("--thresholds", default="", help="JSON object of gates.Thresholds fields")
    c.add_argument("--out", required=True)
    c.set_defaults(func=cmd_canary)

    w = sub.add_parser("watch", help="wait a slice of the window and print the evidence so far")
    sides(w)
    w.add_argument("--seconds", type=float, default=15)
    w.add_argument("--window-start", type=float, default=None)
    w.set_defaults(func=cmd_watch)

    s = sub.add_parser("staging", help="smoke test, offline evaluation and load test of the staging app")
    s.add_argument(
        "--url", required=True, help="base URL of the staging app, e.g. http://127.0.0.1:8010/staging"
    )
    s.add_argument("--registry", required=True)
    s.add_argument("--model-version", required=True)
    s.add_argument("--slo-p99-ms", type=float, default=500)
    s.add_argument("--min-accuracy", type=float, default=0.5)
    s.add_argument("--card-tolerance", type=float, default=0.01)
    s.add_argument("--load-seconds", type=float, default=10)
    s.add_argument("--concurrency", type=int, default=4)
    s.add_argument("--champion-url", default="", help="production's base URL, to score it on the same split")
    s.add_argument(
        "--champion-tolerance", type=float, default=0.01, help="allowed accuracy drop vs production"
    )
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_staging)

    ev = sub.add_parser("evidence", help="extend the window while the gates' verdict is inconclusive")
    sides(ev)
    ev.add_argument("--stable-env", default="production")
    ev.add_argument("--stable-version", required=True)
    ev.add_argument("--window-start", type=float, required=True)
    ev.add_argument("--max-seconds", type=float, required=True, help="longest window, counted from its start")
    ev.add_argument("--thresholds", default="")
    ev.set_defaults(func=cmd_evidence)

    r = sub.add_parser("report", help="combine the stage records into rollout.json/.md/.png")
    r.add_argument("--dir", required=True)
    r.add_argument("--model-version", required=True)
    r.add_argument("--stable-version", default="")
    r.add_argument("--outcome", required=True, choices=["promoted", "rolled_back"])
    r.add_argument("--reason", default="")
    r.set_defaults(func=cmd_report)

    st = sub.add_parser("state", help="write the rollout state metric file")
    st.add_argument("--file", required=True)
    st.add_argument("--model-version", required=True)
    st.add_argument("--stage", required=True, choices=state.STATE_STAGES)
    st.add_argument("--weight", type=float, default=0.0)
    st.set_defaults(func=cmd_state)

    e = sub.add_parser("exporter", help="serve *.prom files of a directory on /metrics")
    e.add_argument("--dir", required=True)
    e.add_argument("--listen", default="127.0.0.1:9392")
    e.set_defaults(func=cmd_exporter)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (PrometheusError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
