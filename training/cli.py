"""`chiops <step>` or `python -m training <step>`: exit 0 ok, 1 failure (e.g. a gate refusal), 2 bad input."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from model_registry import RegistryError
from training.errors import BadInputError, TrainingError

NONE_WORDS = {"none", "null", "-", ""}


def _progress(msg: str) -> None:
    print(f"[training] {msg}", file=sys.stderr, flush=True)


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from training.config import load_config

    return load_config(args.config, args.param)


def _ref_or_none(value: str) -> str | None:
    return None if value.lower() in NONE_WORDS else value


def _pairs(values: list[str], what: str) -> dict[str, str | None]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInputError(f"{what} expects ALIAS=REF (REF a version, an alias or none), got {item!r}")
        out[key] = _ref_or_none(value)
    return out


def cmd_ingest(args: argparse.Namespace) -> int:
    from training.pipeline import load_data

    ds = load_data(_config(args))
    print(
        json.dumps(
            {
                "source": ds.source,
                "samples": len(ds),
                "images_shape": list(ds.images.shape),
                "sha256": ds.sha256,
            }
        )
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from training.pipeline import validated_splits

    _, splits, report = validated_splits(_config(args), _progress)
    print(report.to_text())
    print(f"split sizes: {splits.sizes()}")
    return 0


def cmd_split(args: argparse.Namespace) -> int:
    import numpy as np

    from training.pipeline import validated_splits

    _, splits, _ = validated_splits(_config(args), _progress)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        np.savez(out / f"{name}.npz", images=part.images, labels=part.labels, rows=part.indices)
    print(json.dumps({"output": str(out), "sizes": splits.sizes()}))
    return 0


def _gate(args: argparse.Namespace, config: dict[str, Any] | None):
    from training.gate import Gate

    gate = Gate.from_config(config) if config else Gate()
    if args.min_accuracy is not None:
        gate.min_accuracy = args.min_accuracy
    if args.max_drop is not None:
        gate.max_drop = args.max_drop
    return None if args.no_gate else gate


def _register(args: argparse.Namespace, artifact_dir: Path, config: dict[str, Any] | None) -> int:
    from model_registry import GateRefused, Registry

    registry = Registry(args.registry)
    try:
        version, decision = registry.register(artifact_dir, _gate(args, config), args.set_alias, args.reason)
    except GateRefused as exc:
        print(json.dumps({"registered": None, "gate": exc.decision.to_dict()}))
        raise
    print(
        json.dumps(
            {
                "registered": version,
                "url": registry.version_url(version),
                "aliases": args.set_alias,
                "gate": decision.to_dict() if decision else None,
            }
        )
    )
    _progress(
        f"registered {version} in {registry.root}"
        + (f" as {', '.join(args.set_alias)}" if args.set_alias else "")
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from training.pipeline import run

    config = _config(args)
    if args.output:
        out = Path(args.output)
    else:
        Path("runs").mkdir(exist_ok=True)
        out = Path(tempfile.mkdtemp(prefix=f"{config['name']}-", dir="runs"))
    result = run(config, out, _progress)
    if args.no_register:
        print(json.dumps({"artifacts": str(out), "metrics": result.card["metrics"]}))
        return 0
    return _register(args, out, config)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a TorchScript file or a registered version on a test split (default: that version's own)."""
    from training.gate import load_split, scripted_accuracy

    if Path(args.model).is_file():
        model = Path(args.model).read_bytes()
        split = Path(args.test_split).read_bytes() if args.test_split else None
    else:
        from model_registry import Registry

        registry = Registry(args.registry)
        model = registry.read_file(args.model, "model.ts")
        split = (
            Path(args.test_split).read_bytes()
            if args.test_split
            else registry.read_file(args.model, "test_split.npz")
        )
    if split is None:
        raise BadInputError("--test-split is needed when evaluating a model file")
    images, labels = load_split(split)
    print(json.dumps({"accuracy": scripted_accuracy(model, images, labels), "test_images": len(labels)}))
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from model_registry import Registry

    registry = Registry(args.registry)
    action = args.action
    if action == "register":
        config = None
        if args.config:
            from training.config import load_config

            config = load_config(args.config)
        return _register(args, Path(args.artifacts), config)
    if action == "show":
        index = registry.index()
        if args.json:
            print(json.dumps(index, indent=2))
        else:
            print(f"registry {registry.root}")
            for alias, version in index["aliases"].items():
                print(f"  {alias:<11} {version or '-'}")
            for version, info in sorted(index["versions"].items(), key=lambda kv: int(kv[0][1:])):
                print(
                    f"  {version:<5} {info['config']:<16} accuracy {info['accuracy']:.4f}  "
                    f"registered {info['registered']}"
                )
        return 0
    if action == "resolve":
        version = registry.require(args.ref)
        print(registry.version_url(version) if args.path else version)
        return 0
    if action == "card":
        if args.markdown:
            print(registry.read_file(args.ref, "card.md").decode(), end="")
        else:
            print(json.dumps(registry.card(args.ref), indent=2))
        return 0
    if action == "alias":
        moves = _pairs(args.moves, "alias")
        changes = registry.move_aliases(moves, _pairs(args.expect, "--expect"), args.reason)
    elif action == "promote":
        expect = False if args.expect_production is None else _ref_or_none(args.expect_production)
        changes = registry.promote(args.ref, args.reason, expect)
    elif action == "rollback":
        changes = registry.rollback(args.reason)
    elif action == "history":
        entries = registry.history()[-args.limit :] if args.limit else registry.history()
        for entry in entries:
            print(json.dumps(entry))
        return 0
    elif action == "verify":
        problems = registry.verify()
        for problem in problems:
            print(problem)
        print("registry ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    elif action == "gc":
        print(json.dumps({"removed": registry.gc(args.min_age)}))
        return 0
    else:  # pragma: no cover - argparse restricts the choices
        raise BadInputError(f"unknown registry action {action}")
    print(json.dumps({"moved": changes, "aliases": registry.index()["aliases"]}))
    return 0


def _gate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-accuracy", type=float, help="gate: refuse below this test accuracy (default: config)"
    )
    p.add_argument(
        "--max-drop", type=float, help="gate: refuse when this much worse than production (default: config)"
    )
    p.add_argument("--no-gate", action="store_true", help="register without the quality gate")
    p.add_argument(
        "--set-alias", action="append", default=[], metavar="ALIAS", help="point ALIAS at the new version"
    )
    p.add_argument("--reason", default="", help="recorded in the registry history")


def _guarded(handler):
    """The handler's exit code, or the failure's: 2 for bad input, 1 for a failed step, with the reason."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (TrainingError, RegistryError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except (FileNotFoundError, PermissionError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ingest, validate, split, train, evaluate and registry … to a parser's subcommands."""
    from model_registry import default_root

    registry_opt = argparse.ArgumentParser(add_help=False)
    registry_opt.add_argument(
        "--registry",
        default=default_root(),
        help="registry root: a directory or s3://BUCKET/PREFIX (env CHIOPS_REGISTRY, default registry/)",
    )
    config_opt = argparse.ArgumentParser(add_help=False)
    config_opt.add_argument("--config", required=True, help="training/configs/<name>.yaml")
    config_opt.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.epochs=5",
    )

    sub.add_parser(
        "ingest", parents=[config_opt], help="read the data and print its content hash"
    ).set_defaults(func=_guarded(cmd_ingest))
    sub.add_parser(
        "validate", parents=[config_opt], help="run every data check and print the report"
    ).set_defaults(func=_guarded(cmd_validate))
    p = sub.add_parser("split", parents=[config_opt], help="write the train/val/test split as NPZ files")
    p.add_argument("--output", required=True)
    p.set_defaults(func=_guarded(cmd_split))
    p = sub.add_parser("train", parents=[config_opt, registry_opt], help="ingest → … → export, then register")
    p.add_argument("--output", help="artifact directory (default: a new runs/<name>-* directory)")
    p.add_argument("--no-register", action="store_true", help="only write the artifacts (remote training)")
    _gate_options(p)
    p.set_defaults(func=_guarded(cmd_train))
    p = sub.add_parser(
        "evaluate", parents=[registry_opt], help="accuracy of a model.ts file or registered version"
    )
    p.add_argument("model", help="path to model.ts, or a version/alias in the registry")
    p.add_argument("--test-split", help="test_split.npz to score on (default: the version's own)")
    p.set_defaults(func=_guarded(cmd_evaluate))

    reg = sub.add_parser("registry", help="inspect the registry and move aliases").add_subparsers(
        dest="action", required=True
    )
    for name, text in (
        ("show", "aliases and versions"),
        ("history", "alias moves and registrations"),
        ("verify", "check the registry is consistent"),
        ("gc", "remove dead writers' leftovers"),
        ("rollback", "production → previous"),
    ):
        p = reg.add_parser(name, parents=[registry_opt], help=text)
        if name == "show":
            p.add_argument("--json", action="store_true")
        if name == "history":
            p.add_argument("--limit", type=int, default=0)
        if name == "gc":
            p.add_argument(
                "--min-age",
                type=float,
                default=3600.0,
                help="seconds after which an unlisted version directory counts as a dead writer's leftover",
            )
        if name == "rollback":
            p.add_argument("--reason", default="")
        p.set_defaults(func=_guarded(cmd_registry))
    p = reg.add_parser(
        "resolve", parents=[registry_opt], help="print the version an alias points at (exit 1 if unset)"
    )
    p.add_argument("ref")
    p.add_argument("--path", action="store_true", help="print the version's directory or URL instead")
    p.set_defaults(func=_guarded(cmd_registry))
    p = reg.add_parser("card", parents=[registry_opt], help="print a version's model card")
    p.add_argument("ref")
    p.add_argument("--markdown", action="store_true")
    p.set_defaults(func=_guarded(cmd_registry))
    p = reg.add_parser(
        "alias",
        parents=[registry_opt],
        help="move aliases atomically: ALIAS=REF … (REF: version, alias or none)",
    )
    p.add_argument("moves", nargs="+", metavar="ALIAS=REF")
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="ALIAS=REF",
        help="only move if ALIAS currently is REF",
    )
    p.add_argument("--reason", default="")
    p.set_defaults(func=_guarded(cmd_registry))
    p = reg.add_parser(
        "promote", parents=[registry_opt], help="production → REF and previous → old production"
    )
    p.add_argument("ref")
    p.add_argument(
        "--expect-production", help="only promote if production currently is this version (or none)"
    )
    p.add_argument("--reason", default="")
    p.set_defaults(func=_guarded(cmd_registry))
    p = reg.add_parser(
        "register", parents=[registry_opt], help="register an artifact directory (from remote training)"
    )
    p.add_argument("artifacts")
    p.add_argument("--config", help="take gate thresholds from this config")
    _gate_options(p)
    p.set_defaults(func=_guarded(cmd_registry))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    register(top.add_subparsers(dest="step", required=True, metavar="STEP"))
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)
