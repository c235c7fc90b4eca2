"""The rollout state as a metric: a Prometheus text file served by textfile_exporter (or a node exporter).

`chiops_rollout_stage{model_version, stage}` is 1 for the stage the rollout is in and 0 for the others, so a
dashboard can show where each version is and an alert can fire on `stage="rolled_back"`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

STATE_STAGES = ("staging", "canary", "production", "promoted", "rolled_back")
METRIC = "chiops_rollout_stage"
WEIGHT_METRIC = "chiops_rollout_canary_weight"
TIME_METRIC = "chiops_rollout_last_change_timestamp_seconds"


def render(model_version: str, stage: str, canary_weight: float) -> str:
    if stage not in STATE_STAGES:
        raise ValueError(f"unknown rollout stage {stage!r}; one of {', '.join(STATE_STAGES)}")
    lines = [
        f"# HELP {METRIC} 1 for the stage the latest rollout is in.",
        f"# TYPE {METRIC} gauge",
    ]
    lines += [
        f'{METRIC}{{model_version="{model_version}",stage="{s}"}} {int(s == stage)}' for s in STATE_STAGES
    ]
    lines += [
        f"# HELP {WEIGHT_METRIC} Share of the public route's traffic sent to the canary.",
        f"# TYPE {WEIGHT_METRIC} gauge",
        f"{WEIGHT_METRIC} {canary_weight:g}",
        f"# HELP {TIME_METRIC} When the rollout state last changed.",
        f"# TYPE {TIME_METRIC} gauge",
        f"{TIME_METRIC} {time.time():.3f}",
    ]
    return "\n".join(lines) + "\n"


def write(path: Path, model_version: str, stage: str, canary_weight: float) -> None:
    # Written beside and renamed so a scrape never sees half a file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(render(model_version, stage, canary_weight))
    tmp.replace(path)
