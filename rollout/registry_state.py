"""Print the registry's versions and aliases as JSON for the playbooks (an absent registry is an empty one)."""

import argparse
import json
import sys
from pathlib import Path

from model_registry import ALIASES, Registry


def state(root: str) -> dict:
    if "://" not in root and not (Path(root) / "index.json").exists():
        return {"versions": [], "aliases": dict.fromkeys(ALIASES)}
    index = Registry(root).index()
    return {"versions": list(index["versions"]), "aliases": {a: index["aliases"].get(a) for a in ALIASES}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rollout.registry_state", description=__doc__)
    p.add_argument("--registry", required=True)
    print(json.dumps(state(p.parse_args(argv).registry)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
