"""Command line: `chiops reserve|status|extend|release|inventory --inventory inventories/<env>`.

`python -m chi_scripts …` is the same parser, for notebooks and machines without the `chiops` command.
Exit codes: 0 success, 1 cloud/runtime failure (with Chameleon's reason), 2 bad spec or usage.
"""

from __future__ import annotations

import argparse
import sys

from chi_scripts.errors import CloudError, SpecError

EPILOG = """exit codes: 0 success, 1 cloud or runtime failure (Chameleon's own reason is printed),
2 bad spec or usage. Credentials come from OS_* variables (OS_AUTH_URL + OS_AUTH_TYPE) or, without
OS_AUTH_URL, from python-chi's site lookup with the spec's `site`. See docs/chi_scripts.md."""


def _run(operation: str, *args, **kwargs) -> int:
    """Runs one chi_scripts.operations function and maps its failure to an exit code with the reason."""
    from chi_scripts import operations

    try:
        getattr(operations, operation)(*args, **kwargs)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except CloudError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # an OpenStack client error we did not anticipate: still a cloud failure
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_reserve(args: argparse.Namespace) -> int:
    return _run("reserve", args.inventory, keep_on_failure=args.keep_on_failure)


def cmd_status(args: argparse.Namespace) -> int:
    if args.every:
        return _refresh(args)
    return _run("status", args.inventory, metrics_file=args.metrics_file)


def _refresh(args: argparse.Namespace) -> int:
    """`status --every`: rewrite the metrics file forever. A failed round (Chameleon unreachable, a token
    that expired) is reported and retried next round; the file keeps the last end it knew, so the alert
    still fires on time. A bad spec or option stops it (exit 2)."""
    import time

    from chi_scripts import operations
    from chi_scripts.spec import parse_seconds

    try:
        if not args.metrics_file:
            raise SpecError("--every needs --metrics-file (it refreshes that file)")
        interval = parse_seconds(args.every, "--every")
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    while True:
        try:
            operations.status(args.inventory, metrics_file=args.metrics_file)
        except SpecError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except Exception as e:  # CloudError or a client's own: the next round may succeed
            print(f"error: {e} (retrying in {args.every})", file=sys.stderr, flush=True)
        time.sleep(interval)


def cmd_extend(args: argparse.Namespace) -> int:
    return _run("extend", args.inventory, args.by)


def cmd_release(args: argparse.Namespace) -> int:
    return _run("release", args.inventory)


def cmd_inventory(args: argparse.Namespace) -> int:
    return _run("inventory", args.inventory)


def register(sub: argparse._SubParsersAction) -> None:
    """Adds reserve, status, extend, release and inventory to a parser's subcommands (the CLI contract)."""

    def command(name, help_text, handler):
        c = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        c.add_argument(
            "--inventory",
            "-i",
            required=True,
            metavar="DIR",
            help="inventory directory holding chameleon.yml",
        )
        c.set_defaults(func=handler)
        return c

    r = command(
        "reserve",
        "find or create the lease, launch servers, attach floating IPs, wait for SSH, write hosts.yml",
        cmd_reserve,
    )
    r.add_argument(
        "--keep-on-failure", action="store_true", help="leave what this run created when a step fails"
    )
    s = command("status", "lease state and time left, servers, addresses, SSH reachability", cmd_status)
    s.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="also write chiops_lease_end_timestamp_seconds (Prometheus text, for a textfile collector)",
    )
    s.add_argument(
        "--every",
        metavar="DURATION",
        help="with --metrics-file: repeat every DURATION (e.g. 5m) until stopped - the lease-end refresher "
        "where no systemd timer or CronJob runs it",
    )
    e = command("extend", "prolong the lease (Blazar lease update)", cmd_extend)
    e.add_argument("--by", required=True, metavar="DURATION", help="how much longer, e.g. 1d, 12h, 90m")
    command("release", "delete the servers, floating IPs and lease (idempotent)", cmd_release)
    command("inventory", "rewrite hosts.yml from the live lease", cmd_inventory)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m chi_scripts",
        description="Chameleon leases, bare-metal nodes and floating IPs for a ChiOps environment.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    register(p.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
