"""The rollout's only door to the registry's writer: alias moves and reads, one narrow function each.

Alias moves go through the registry's own writer (`model_registry`), which locks, checks `expect` and records
them in the registry's history; the engine records the same move in its ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from model_registry import ALIASES, Registry


def read(root: str) -> dict:
    """{"versions": [...], "aliases": {alias: version|None}}; an absent local registry is an empty one."""
    if "://" not in root and not (Path(root) / "index.json").exists():
        return {"versions": [], "aliases": dict.fromkeys(ALIASES)}
    index = Registry(root).index()
    return {"versions": list(index["versions"]), "aliases": {a: index["aliases"].get(a) for a in ALIASES}}


def move(
    root: str, moves: Mapping[str, str | None], reason: str, expect: Mapping[str, str | None] | None = None
) -> dict[str, list[str | None]]:
    """Move aliases in one registry write (all or none); returns {alias: [old, new]} of what changed."""
    return Registry(root).move_aliases(dict(moves), dict(expect) if expect else None, reason)
