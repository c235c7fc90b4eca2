"""The demo's closing table: each rollout's stages, every gate's measured values vs thresholds, the decision,
and the client-side count of failed requests (read from the load generator's own metrics)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

from rollout import report as rollout_report
from serving import metric_names as m


def client_failures(metrics_url: str) -> tuple[int, int]:
    """(failed, total) requests the load generator counted, /predict and /feedback, from its /metrics page."""
    text = httpx.get(metrics_url, timeout=10).text
    failed = total = 0
    for line in text.splitlines():
        if not line.startswith((m.CLIENT_REQUESTS_TOTAL + "{", m.CLIENT_FEEDBACK_TOTAL + "{")):
            continue
        labels, value = line.rsplit(" ", 1)
        count = int(float(value))
        total += count
        if f'{m.OUTCOME}="ok"' not in labels:
            failed += count
    return failed, total


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return " ".join(f"{k}={_short(v)}" for k, v in value.items() if not k.startswith(("min_", "dof")))
    if value is None or value == "":
        return "none"
    return str(value)


def rows(report: dict) -> list[list[str]]:
    out = []
    for stage in report["stages"]:
        for check in stage["checks"]:
            out.append(
                [
                    report["model_version"],
                    rollout_report.stage_label(stage),
                    check["name"],
                    _short(check["measured"]),
                    _short(check["threshold"]),
                    rollout_report.check_result(check),
                ]
            )
    return out


def table(reports: list[dict], failed: int, total: int) -> str:
    header = ["version", "stage", "gate", "measured", "threshold", "result"]
    body = [r for rep in reports for r in rows(rep)]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(row))

    lines = [line(header), "-+-".join("-" * w for w in widths), *map(line, body), ""]
    for rep in reports:
        steps = " → ".join(f"{s['stage']} {'pass' if s['passed'] else 'FAIL'}" for s in rep["stages"])
        lines.append(f"{rep['model_version']} steps: {steps}")
    for rep in reports:
        lines.append(
            f"{rep['model_version']}: {rep['outcome'].upper()} "
            f"(stable was {rep['stable_version'] or 'none'}) - {rep['reason']}"
        )
    lines.append(f"client-side failed requests across the demo (/predict and /feedback): {failed} of {total}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rollout.summary", description=__doc__.splitlines()[0])
    p.add_argument("--report", action="append", required=True, help="a rollout report directory (repeatable)")
    p.add_argument("--loadgen-metrics", required=True, help="e.g. http://127.0.0.1:9393/metrics")
    p.add_argument("--out", required=True, help="summary JSON to write")
    a = p.parse_args(argv)
    reports = [json.loads((Path(d) / "rollout.json").read_text()) for d in a.report]
    failed, total = client_failures(a.loadgen_metrics)
    text = table(reports, failed, total)
    summary = {
        "rollouts": [
            {
                "model_version": r["model_version"],
                "outcome": r["outcome"],
                "reason": r["reason"],
                "stages": [
                    {
                        "stage": s["stage"],
                        "passed": s["passed"],
                        "verdict": s.get("verdict"),
                        "checks": {c["name"]: c["passed"] for c in s["checks"]},
                    }
                    for s in r["stages"]
                ],
            }
            for r in reports
        ],
        "client_failed_requests": failed,
        "client_requests": total,
        "table": text,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
