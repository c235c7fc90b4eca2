"""Command line: ``chiops pipeline decide|run`` (also ``python -m pipeline …``): retrain or not and why; or
decide and run the whole chain (pipeline/run.py).

    python -m pipeline decide --new-labels 250 --drift 0.31 --code-commit "$(git rev-parse HEAD)" \
        --trained-commit abc123 --last-training 2026-12-01T08:00:00Z --inventory inventories/production
    python -m pipeline decide --registry registry --feedback-store sqlite:///runs/feedback.db \
        --prometheus http://127.0.0.1:9090 --code-commit "$(git rev-parse HEAD)"

With ``--registry`` the commit production's model was trained from comes from its card; ``--feedback-store``
counts the labels received after the newest feedback that model saw; ``--prometheus`` reads the drift rule
(pipeline/signals.py). A value given both ways is bad usage.

Prints the decision and every reason (``--json`` for the whole Decision); exit 0 when it decided (retrain or
skip; ``action`` says which), 1 when it refused (the lease cannot be extended) or Chameleon could not be
reached, 2 for bad input. ``--extend`` performs the lease extension the decision asks for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from pipeline.policy import REFUSE, Policy, Signals, decide


def _when(text: str) -> float:
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO time like 2026-12-01T08:00:00Z, got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC")
    return parsed.timestamp()


def _policy(path: str | None) -> Policy:
    if not path:
        return Policy()
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the policy {path}: {exc}") from None
    return Policy.from_mapping(data)


def _read_signals(args) -> tuple[int, float | None, str | None]:
    """(new labels, drift, trained commit), each typed in or read from its source."""
    from pipeline import signals

    for given, source in (
        (args.new_labels is not None, args.feedback_store),
        (args.drift is not None, args.prometheus),
        (args.trained_commit is not None, args.registry),
    ):
        if given and source:
            raise ValueError("give each signal once: typed in, or read from its source (see --help)")
    if args.feedback_store and not args.registry:
        raise ValueError("--feedback-store needs --registry (the card says which feedback the model saw)")
    card = signals.production_card(args.registry) if args.registry else None
    labels = signals.new_labels(args.feedback_store, card) if args.feedback_store else args.new_labels or 0
    version = card["version"] if card else None
    drift = signals.live_drift(args.prometheus, version=version) if args.prometheus else args.drift
    commit = card.get("git_commit") if card else args.trained_commit
    return labels, drift, commit


def cmd_decide(args) -> int:
    from pipeline.signals import SignalError

    try:
        policy = _policy(args.policy)
        new_labels, drift, trained_commit = _read_signals(args)
        signals = Signals(
            new_labels=new_labels,
            drift=drift,
            drift_armed=not args.drift_disarmed,
            code_commit=args.code_commit,
            trained_commit=trained_commit,
            trainings=tuple(args.last_training),
        )
    except (ValueError, TypeError) as exc:
        print(f"pipeline decide: {exc}", file=sys.stderr)
        return 2
    except SignalError as exc:
        print(f"pipeline decide: {exc}", file=sys.stderr)
        return 1
    if args.inventory:
        from chi_scripts.errors import CloudError, SpecError
        from pipeline.lease import decide_within_lease

        try:
            decision = decide_within_lease(policy, signals, args.inventory, args.extend, time.time())
        except SpecError as exc:
            print(f"pipeline decide: {exc}", file=sys.stderr)
            return 2
        except CloudError as exc:
            print(f"pipeline decide: {exc}", file=sys.stderr)
            return 1
    else:
        decision = decide(policy, signals, None, time.time())
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        print(f"{decision.action} (triggers: {', '.join(decision.triggers) or 'none'})")
        for reason in decision.reasons:
            print(f"  - {reason}")
    if decision.action == REFUSE:
        print(f"pipeline decide: refused: {decision.reasons[-1]}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args) -> int:
    from pipeline.history import HistoryError
    from pipeline.run import Request, RunError, run

    try:
        request = Request(
            settings=args.settings,
            config=args.config,
            feedback_store=args.feedback_store,
            code_commit=args.code_commit,
            prometheus=args.prometheus,
            policy=_policy(args.policy),
            inventory=args.inventory,
            extend=args.extend,
            state_dir=Path(args.state_dir) if args.state_dir else None,
            params=tuple(args.param),
        )
        if not Path(args.config).is_file():
            raise ValueError(f"no training config {args.config}")
    except (ValueError, TypeError) as exc:
        print(f"pipeline run: {exc}", file=sys.stderr)
        return 2
    from chi_scripts.errors import CloudError, SpecError
    from rollout.cli import UsageError

    try:
        report = run(request, progress=lambda line: print(line, flush=True))
    except (UsageError, SpecError) as exc:
        print(f"pipeline run: {exc}", file=sys.stderr)
        return 2
    except (RunError, HistoryError, CloudError) as exc:
        print(f"pipeline run: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    if report["outcome"] in ("skipped", "promoted", "staged"):
        return 0
    print(
        f"pipeline run: {report['outcome']}: {report.get('error') or report['decision']['reasons'][-1]}",
        file=sys.stderr,
    )
    return 1


def register(subparsers) -> None:
    group = subparsers.add_parser("pipeline", help="continuous training: when to retrain")
    leaves = group.add_subparsers(dest="pipeline_command", required=True)
    p = leaves.add_parser("decide", help="decide whether to retrain now, and say why")
    p.add_argument("--new-labels", type=int, help="labelled feedback since production's data (default 0)")
    p.add_argument("--drift", type=float, help="input drift statistic of live traffic (omit: not measured)")
    p.add_argument("--registry", help="read production's card here (trained commit, feedback it saw)")
    p.add_argument("--feedback-store", help="count new labels in this store (sqlite:///… or postgresql://…)")
    p.add_argument("--prometheus", help="read the drift rule of production's version from this Prometheus")
    p.add_argument(
        "--drift-disarmed", action="store_true", help="the drift trigger fired before and has not re-armed"
    )
    p.add_argument("--code-commit", required=True, help="commit of the training code and configs now")
    p.add_argument("--trained-commit", help="commit production's model was trained from (its card)")
    p.add_argument(
        "--last-training", type=_when, action="append", default=[], metavar="TIME", help="repeatable"
    )
    p.add_argument("--policy", help="YAML mapping of Policy fields (docs/pipeline.md)")
    p.add_argument("--inventory", help="check (and with --extend, extend) this inventory's Chameleon lease")
    p.add_argument("--extend", action="store_true", help="extend the lease when the decision needs it")
    p.add_argument("--json", action="store_true", help="print the whole decision as JSON")
    p.set_defaults(func=cmd_decide)

    p = leaves.add_parser(
        "run", help="decide, then snapshot → train → register → roll out through the gates; write a report"
    )
    p.add_argument("--settings", required=True, help="the rollout's settings file (playbooks/pipeline.yml)")
    p.add_argument("--config", required=True, help="training config to retrain from (training/configs/…)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="training override")
    p.add_argument("--feedback-store", required=True, help="sqlite:///… or postgresql://…")
    p.add_argument("--prometheus", help="read the drift rule here (omit: drift not measured)")
    p.add_argument("--code-commit", required=True, help="commit of the training code and configs now")
    p.add_argument("--policy", help="YAML mapping of Policy fields (docs/pipeline.md)")
    p.add_argument("--inventory", help="the run must fit in this inventory's Chameleon lease")
    p.add_argument("--extend", action="store_true", help="extend the lease when the decision needs it")
    p.add_argument(
        "--state-dir", help="runs.jsonl and each run's directory (default: <rollout state>/pipeline)"
    )
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.set_defaults(func=cmd_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    # ``python -m pipeline decide …`` reads as ``chiops pipeline decide …``
    args = parser.parse_args(["pipeline", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
