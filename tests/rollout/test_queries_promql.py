"""The gates' PromQL (rollout/queries.py) evaluated by Prometheus' own engine (promtool test rules) on series
shaped like Ray's: one series per replica, replicas that restart, apps that appear within the window."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from rollout import queries
from serving import metric_names as m

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def series(name: str, replica: str, values: str, environment="production", version="v1") -> dict:
    labels = f'environment="{environment}",model_version="{version}",replica="{replica}"'
    return {"series": f"{name}{{{labels}}}", "values": values}


def test_growth_is_per_series_across_a_restart_and_counts_a_new_app_from_zero(tmp_path):
    fb, ok = m.FEEDBACK_TOTAL, m.FEEDBACK_CORRECT_TOTAL
    inputs = [
        # Stable's router replica "a" counts for 5 min (2 of every 10 labels wrong), then is replaced by "b",
        # whose counters start again from 0 at 5m15s.
        series(fb, "a", "0+10x20 stale"),
        series(ok, "a", "0+8x20 stale"),
        series(fb, "b", "_x21 10+10x19"),
        series(ok, "b", "_x21 8+8x19"),
        # A canary that appeared at 2m30s.
        series(fb, "c", "_x10 10+10x30", environment="canary", version="v2"),
    ]
    cases = [
        # Over 10m-5m..10m only "b" grew: 200 labels, 160 right. Sum minus sum would give 200-200 = 0 labels
        # and hide that 40 were wrong.
        (queries.feedback("production", "v1", "5m"), 200),
        (queries.feedback_correct("production", "v1", "5m"), 160),
        # The canary is in both windows: counted from its value a window ago, or from 0 when it was absent.
        (queries.feedback("canary", "v2", "5m"), 200),
        (queries.feedback("canary", "v2", "8m"), 310),
    ]
    spec = {
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": inputs,
                "promql_expr_test": [
                    {"expr": expr, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": value}]}
                    for expr, value in cases
                ],
            }
        ],
    }
    path = tmp_path / "growth.yml"
    path.write_text(yaml.safe_dump(spec))
    out = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
