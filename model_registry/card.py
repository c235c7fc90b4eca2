"""The model card contract (docs/contracts.md): which fields card.json must have, and card.md rendered from
it. Torch-free, shared by training (which writes cards) and the registry (which checks them on
registration)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

REQUIRED_FIELDS = ("version", "created", "config", "data", "metrics", "device", "torch_version", "git_commit")
REQUIRED_METRICS = (
    "accuracy",
    "macro_f1",
    "ece",
    "per_class_recall",
    "auto_key_share",
    "auto_key_threshold",
    "latency_ms_per_batch",
)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def missing_fields(card: dict[str, Any]) -> list[str]:
    missing = [f for f in REQUIRED_FIELDS if f not in card]
    missing += [f"metrics.{m}" for m in REQUIRED_METRICS if m not in card.get("metrics", {})]
    return missing


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _training_line(card: dict[str, Any]) -> str:
    t, model = card.get("training"), card.get("model", {})
    if not t:
        return "- (not recorded)"
    return (
        f"- {t['epochs_run']} epochs, best val loss at epoch {t['best_epoch']} (early stopping);"
        f" {t['train_seconds']} s at {t['samples_per_second']} samples/s;"
        f" {model.get('parameters', '?')} parameters;"
        f" deterministic mode: {card['device'].get('deterministic', '?')}"
    )


def render_markdown(card: dict[str, Any]) -> str:
    m, data, cfg = card["metrics"], card["data"], card["config"]
    recall = " | ".join(f"{r:.3f}" for r in m["per_class_recall"])
    lines = [
        f"# Model card: digits classifier {card.get('version') or '(unregistered)'}",
        "",
        f"Created {card['created']} from config `{cfg['name']}`, source commit `{card['git_commit']}`,"
        f" torch {card['torch_version']} on {card['device'].get('backend', card['device'].get('type'))}"
        f" ({card['device'].get('name', '')}).",
        "",
        "## Intended use",
        "Recognising handwritten digits (8x8 greyscale, pixel values 0..16) keyed from forms and cheques."
        " Digits whose confidence is at least the auto-key threshold are keyed automatically;"
        " the rest go to a person.",
        "",
        "## Data",
        f"- source: `{data['source']}`, sha256 `{data['sha256']}`",
        f"- split sizes: {data['split_sizes']} (stratified, split seed {cfg['values']['split']['seed']})",
        f"- label noise injected into train/val: {data.get('label_noise', {})}",
        *[
            f"- data version: {v['kind']} `{v.get('path', v.get('source', ''))}`, sha256 `{v['sha256']}`"
            + (f", {v['records']} feedback records" if "records" in v else "")
            for v in data.get("versions", [])
        ],
        "",
        "## Metrics (test split, clean labels)",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {_fmt(m['accuracy'])} |",
        f"| macro-F1 | {_fmt(m['macro_f1'])} |",
        f"| ECE | {_fmt(m['ece'])} |",
        f"| auto-key share at >= {m.get('auto_key_target_precision', 0.99):.0%} val precision"
        f" | {_fmt(m['auto_key_share'])} |",
        f"| auto-key threshold (chosen on val) | {_fmt(m['auto_key_threshold'])} |",
        f"| precision of auto-keyed test digits | {_fmt(m.get('auto_key_test_precision'))} |",
        f"| latency per batch of {m.get('latency_batch', '?')} (ms) | {_fmt(m['latency_ms_per_batch'])} |",
        "",
        "Per-class recall (0..9): " + recall,
        "",
        "## Training",
        _training_line(card),
        "",
        "## Limitations",
        "- Trained on one 1990s population of writers (UCI digits);"
        " accuracy on other scanners or writers is unmeasured.",
        "- The auto-key threshold was chosen on a small validation split; monitor online precision.",
        "",
    ]
    return "\n".join(lines)
