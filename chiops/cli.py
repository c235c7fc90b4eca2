"""`chiops`: one parser over every ChiOps CLI module.

Each module in COMMAND_MODULES exposes `register(subparsers)`, adding its own subcommands whose leaves
`set_defaults(func=handler)`; a handler returns the exit code. Modules import only argparse-level code at the
top: python-chi, Ray and torch are imported inside handlers, so `chiops --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from chiops import __version__

# The command-line modules, in the order their commands appear in `chiops --help`. A module that is not in
# this checkout yet (another branch adds it) is left out; one that exists but fails to import is an error.
COMMAND_MODULES = ("chi_scripts.cli", "training.cli", "rollout.cli", "pipeline.cli")

EXIT_CODES = """exit codes (every command):
  0  success
  1  the operation failed; the reason is printed on stderr
  2  bad usage or input (unknown option, invalid spec or configuration); the reason is printed on stderr"""


def available_modules() -> list:
    modules = []
    for name in COMMAND_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.rpartition(".")[0]):
                raise
    return modules


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="chiops",
        description="ChiOps: Chameleon leases, training and the model registry, gated rollouts.",
        epilog=EXIT_CODES + "\n\n`chiops COMMAND --help` describes each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"chiops {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in available_modules():
        module.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1
