"""A rollout's report: one JSON (the record), one Markdown (for people), one PNG (candidate vs stable)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def build(
    records: list[dict[str, Any]],
    model_version: str,
    stable_version: str | None,
    outcome: str,
    reason: str,
    steps: list[str] | None = None,
    skip_analysis: bool = False,
) -> dict:
    return {
        "model_version": model_version,
        "stable_version": stable_version,
        "outcome": outcome,
        "reason": reason,
        "skip_analysis": skip_analysis,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "stages": records,
        "steps": steps or [],
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def stage_label(stage: dict[str, Any]) -> str:
    return stage["stage"] + (" (guard)" if stage.get("mode") == "guard" else "")


def check_result(check: dict[str, Any]) -> str:
    """pass, or the gate's own verdict in capitals: a guard goes on with gates still open (INCONCLUSIVE)."""
    return "pass" if check["passed"] else check.get("verdict", "fail").upper()


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Rollout of {report['model_version']} (stable: {report['stable_version'] or 'none'})",
        "",
        f"- outcome: **{report['outcome']}**",
        f"- reason: {report['reason']}",
        f"- finished: {report['finished']}",
        f"- canary analysis skipped (--skip-analysis): {'yes' if report.get('skip_analysis') else 'no'}",
        "",
        "| stage | check | decision | measured | threshold | reason |",
        "|---|---|---|---|---|---|",
    ]
    for stage in report["stages"]:
        for check in stage["checks"]:
            lines.append(
                "| {} | {} | {} | {} | {} | {} |".format(
                    stage_label(stage),
                    check["name"],
                    check_result(check),
                    _fmt(check["measured"]).replace("|", "/"),
                    _fmt(check["threshold"]).replace("|", "/"),
                    check["reason"].replace("|", "/"),
                )
            )
    for canary in _canaries(report):
        lines.append(
            f"\nCanary window {canary.get('window')} at weight {canary.get('weight')}; chart: rollout.png"
        )
    if report.get("steps"):
        lines += ["", "## Steps", "", *[f"- {step}" for step in report["steps"]]]
    return "\n".join(lines) + "\n"


def _canaries(report: dict[str, Any]) -> list[dict[str, Any]]:
    def plotted(record: dict[str, Any]) -> bool:
        return any(points for side in (record.get("series") or {}).values() for points in side.values())

    return [s for s in report["stages"] if s["stage"].startswith("canary") and plotted(s)]


def chart(canaries: list[dict[str, Any]], path: Path) -> None:
    """Three panels over the analysis windows: p99 latency, error rate, online accuracy, candidate vs stable;
    each weight step's window is shaded."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    start = canaries[0]["window_start"]
    panels = (
        ("p99_latency_ms", "p99 latency (ms)"),
        ("error_rate", "error rate"),
        ("accuracy", "online accuracy"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for n, canary in enumerate(canaries):
            for side, style in (("stable", "tab:blue"), ("candidate", "tab:red")):
                points = canary["series"][side].get(key, [])
                ax.plot(
                    [t - start for t, _ in points],
                    [v for _, v in points],
                    color=style,
                    marker=".",
                    label=f"{side} {canary[f'{side}_version']}" if n == 0 else None,
                )
            ax.axvspan(canary["window_start"] - start, canary["window_end"] - start, alpha=0.06 * (n + 1))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(bottom=0)
    axes[0].legend(loc="best")
    axes[-1].set_xlabel("seconds since the canary took traffic")
    weights = ", ".join(f"{c['weight']:g}" for c in canaries)
    verdict = "passed" if all(c["passed"] for c in canaries) else "rejected"
    fig.suptitle(
        f"canary {canaries[0]['candidate_version']} vs stable {canaries[0]['stable_version']} "
        f"at weights {weights}: {verdict}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(directory: Path, report: dict[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "rollout.json", directory / "rollout.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(report))
    for record in report["stages"]:
        name = f"{record['stage'].replace('@', '-').replace('%', 'pct')}.json"
        (directory / name).write_text(json.dumps(record, indent=2) + "\n")
    canaries = _canaries(report)
    if canaries:
        paths.append(directory / "rollout.png")
        chart(canaries, paths[-1])
    return paths
