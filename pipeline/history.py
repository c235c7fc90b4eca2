"""The pipeline's own runs, one JSON line each in ``<state dir>/runs.jsonl``: what the next decision needs
from the last ones (when trainings started, for cooldown, budget and schedule; the drift trigger's hysteresis
state), so nothing is typed in by hand.

A line is appended once a run has ended (whatever its outcome), under the run's lock; a run killed before
that leaves no line, so its training does not count against the budget.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE = "runs.jsonl"


class HistoryError(RuntimeError):
    """runs.jsonl cannot be read or holds a line that is not a run record; the message names the line."""


def read(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / FILE
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise HistoryError(f"cannot read {path}: {exc.strerror}") from None
    runs = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            float(record["time"])
            record["drift_armed"]  # a record without it is not one (KeyError)
        except (ValueError, KeyError, TypeError):
            raise HistoryError(f"{path}:{number} is not a pipeline run record") from None
        runs.append(record)
    return runs


def trainings(runs: list[dict[str, Any]]) -> tuple[float, ...]:
    """Start times of the runs that trained (whatever came of the model)."""
    return tuple(float(r["time"]) for r in runs if r.get("trained"))


def drift_armed(runs: list[dict[str, Any]]) -> bool:
    """The hysteresis state the last decision handed on; armed before the first run."""
    return bool(runs[-1]["drift_armed"]) if runs else True


def append(state_dir: Path, record: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / FILE, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
