"""A rollout's report: one JSON (the record), one Markdown (for people), one PNG (candidate vs stable)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

STAGES = ("staging", "canary", "production")


def load_stages(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads((directory / f"{s}.json").read_text())
        for s in STAGES
        if (directory / f"{s}.json").exists()
    ]


def build(directory: Path, model_version: str, stable_version: str | None, outcome: str, reason: str) -> dict:
    return {
        "model_version": model_version,
        "stable_version": stable_version,
        "outcome": outcome,
        "reason": reason,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "stages": load_stages(directory),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Rollout of {report['model_version']} (stable: {report['stable_version'] or 'none'})",
        "",
        f"- outcome: **{report['outcome']}**",
        f"- reason: {report['reason']}",
        f"- finished: {report['finished']}",
        "",
        "| stage | check | decision | measured | threshold | reason |",
        "|---|---|---|---|---|---|",
    ]
    for stage in report["stages"]:
        for check in stage["checks"]:
            lines.append(
                "| {} | {} | {} | {} | {} | {} |".format(
                    stage["stage"],
                    check["name"],
                    "pass" if check["passed"] else "FAIL",
                    _fmt(check["measured"]).replace("|", "/"),
                    _fmt(check["threshold"]).replace("|", "/"),
                    check["reason"].replace("|", "/"),
                )
            )
    canary = next((s for s in report["stages"] if s["stage"] == "canary"), None)
    if canary:
        lines += [
            "",
            f"Canary window: {canary.get('window')} at weight {canary.get('weight')}; chart: rollout.png",
        ]
    return "\n".join(lines) + "\n"


def chart(canary: dict[str, Any], path: Path) -> None:
    """Three panels over the analysis window: p99 latency, error rate, online accuracy, candidate vs stable."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    start = canary["window_start"]
    panels = (
        ("p99_latency_ms", "p99 latency (ms)"),
        ("error_rate", "error rate"),
        ("accuracy", "online accuracy"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for side, style in (("stable", "tab:blue"), ("candidate", "tab:red")):
            points = canary["series"][side].get(key, [])
            version = canary[f"{side}_version"]
            ax.plot(
                [t - start for t, _ in points],
                [v for _, v in points],
                color=style,
                marker=".",
                label=f"{side} {version}",
            )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(bottom=0)
    axes[0].legend(loc="best")
    axes[-1].set_xlabel("seconds since the canary took traffic")
    verdict = "promoted" if canary["passed"] else "rejected"
    fig.suptitle(f"canary {canary['candidate_version']} vs stable {canary['stable_version']}: {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(directory: Path, report: dict[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "rollout.json", directory / "rollout.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(report))
    canary = next((s for s in report["stages"] if s["stage"] == "canary" and s.get("series")), None)
    if canary:
        paths.append(directory / "rollout.png")
        chart(canary, paths[-1])
    return paths
