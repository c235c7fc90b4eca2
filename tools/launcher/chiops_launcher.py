"""Finds the ChiOps checkout a `chiops` call belongs to and runs its chiops.cli.

The venv is shared by every checkout with the same pins, so it cannot hold any one checkout's code. The
checkout is, in order: $CHIOPS_ROOT; the checkout whose .venv/bin/chiops was called (the path as called,
before symlinks resolve into the shared cache); the current directory or its nearest parent that is one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def is_checkout(path: Path) -> bool:
    return (path / "chiops" / "cli.py").is_file() and (path / "pyproject.toml").is_file()


def find_checkout(argv0: str, cwd: Path, env: dict[str, str]) -> Path | None:
    if env.get("CHIOPS_ROOT"):
        root = Path(env["CHIOPS_ROOT"]).absolute()
        return root if is_checkout(root) else None
    called = Path(os.path.abspath(argv0))  # abspath, not resolve: keep the checkout's .venv link
    if called.parent.name == "bin" and is_checkout(called.parent.parent.parent):
        return called.parent.parent.parent
    for candidate in (cwd, *cwd.parents):
        if is_checkout(candidate):
            return candidate
    return None


def main() -> int:
    root = find_checkout(sys.argv[0], Path.cwd(), dict(os.environ))
    if root is None:
        where = (
            f"CHIOPS_ROOT={os.environ['CHIOPS_ROOT']} is not" if os.environ.get("CHIOPS_ROOT") else "found no"
        )
        print(
            f"chiops: {where} a ChiOps checkout (a directory with pyproject.toml and chiops/cli.py); "
            "run chiops "
            "inside one, through its .venv/bin/chiops, or set CHIOPS_ROOT",
            file=sys.stderr,
        )
        return 2
    sys.path.insert(0, str(root))
    # Commands that start Python children (playbooks, `python -m rollout`) find the same checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    from chiops.cli import main as chiops_main

    return chiops_main()


if __name__ == "__main__":
    sys.exit(main())
