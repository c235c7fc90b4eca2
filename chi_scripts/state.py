"""The state file inventories/<env>/.chiops-state.json: what a run created, so release finds it.

It holds names, IDs and addresses only - never credentials.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

STATE_FILE = ".chiops-state.json"


def state_path(inventory_dir: Path) -> Path:
    return Path(inventory_dir) / STATE_FILE


def read_state(inventory_dir: Path) -> dict:
    path = state_path(inventory_dir)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_state(inventory_dir: Path, state: dict):
    path = state_path(inventory_dir)
    state = dict(state, updated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def remove_state(inventory_dir: Path):
    state_path(inventory_dir).unlink(missing_ok=True)
