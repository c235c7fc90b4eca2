"""One training run from a config: ingest → validate → split → train → evaluate → export → card."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from training.card import git_commit, utc_now, write_card
from training.data import Dataset, ingest
from training.errors import DataError, TrainingError
from training.split import Part, Splits, stratified_split
from training.validate import (
    Report,
    check_class_balance,
    check_leakage,
    drop_duplicates,
    validate_dataset,
)

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def load_data(config: dict[str, Any]) -> Dataset:
    base = Path(config["_path"]).parent if "_path" in config else None
    return ingest(config["data"]["source"], base)


def validated_splits(config: dict[str, Any], progress: Progress = _quiet) -> tuple[Dataset, Splits, Report]:
    """Ingest, validate and split; DataError (exit 2) with the whole report when any check fails."""
    dataset = load_data(config)
    progress(f"ingested {len(dataset)} samples from {dataset.source} (sha256 {dataset.sha256[:12]}…)")
    report = validate_dataset(dataset, config["data"])
    if not report.ok:
        raise DataError("data validation failed:\n" + report.to_text())
    clean = drop_duplicates(dataset) if config["data"]["duplicates"] == "drop" else dataset
    s = config["split"]
    splits = stratified_split(clean.images, clean.labels, s["val"], s["test"], s["seed"])
    leakage = check_leakage(
        {"train": splits.train.images, "val": splits.val.images, "test": splits.test.images}
    )
    report.checks.append(leakage)
    if not leakage.ok:
        raise DataError("data validation failed:\n" + report.to_text())
    feedback = config["data"].get("feedback")
    if feedback:
        splits = with_feedback(splits, feedback_path(config), report, config["data"], progress)
    progress(f"validation passed; split {splits.sizes()}")
    return clean, splits, report


def feedback_path(config: dict[str, Any]) -> Path:
    path = Path(config["data"]["feedback"])
    if not path.is_absolute() and "_path" in config and not path.exists():
        path = Path(config["_path"]).parent / path
    return path


def with_feedback(splits: Splits, path: Path, report: Report, data_config, progress: Progress) -> Splits:
    """The feedback snapshot, validated like the reference data, joins the training split (never val/test)."""
    from training.feedback_data import load_snapshot, validate_feedback

    snap = load_snapshot(path)
    checks = validate_feedback(snap.dataset, splits.test.images, data_config)
    report.checks += [replace(c, name=f"feedback.{c.name}") for c in checks.checks]
    if not checks.ok:
        raise DataError("feedback validation failed:\n" + report.to_text())
    fb = drop_duplicates(snap.dataset) if data_config["duplicates"] == "drop" else snap.dataset
    train = splits.train
    first = len(splits.train) + len(splits.val) + len(splits.test)  # row numbers after the reference data
    joined = Dataset(
        np.concatenate([train.images.astype(np.float64), fb.images]),
        np.concatenate([train.labels.astype(np.float64), fb.labels]),
        "train+feedback",
        "",
    )
    for check in (
        check_class_balance(joined, data_config["max_class_imbalance"], data_config["min_per_class"]),
        check_leakage({"train": train.images, "val": splits.val.images, "feedback": fb.images}),
    ):
        report.checks.append(replace(check, name=f"train+feedback.{check.name}"))
        if not check.ok:
            raise DataError("feedback validation failed:\n" + report.to_text())
    progress(
        f"feedback {path.name}: {len(fb)} samples (sha256 {snap.dataset.sha256[:12]}…) "
        "join the training split"
    )
    splits.train = Part(
        joined.images.astype(np.float32),
        joined.labels.astype(np.int64),
        np.concatenate([train.indices, first + np.arange(len(fb))]),
    )
    splits.feedback = snap.provenance
    return splits


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class RunResult:
    artifact_dir: Path
    card: dict[str, Any]
    model: Any  # the trained DigitsCNN, in memory (for tests comparing it with the TorchScript export)
    splits: Splits


def run(config: dict[str, Any], out_dir: str | Path, progress: Progress = _quiet) -> RunResult:
    """Train one model and write an artifact directory (model.ts, state_dict.pt, card, test split)."""
    # torch is imported here so the registry commands stay light (the rollout calls them often)
    import torch

    from training.device import describe_device, select_device
    from training.evaluate import evaluate
    from training.export import export_model, save_test_split
    from training.model import build_model, count_parameters
    from training.noise import apply_label_noise
    from training.train import fit, set_determinism

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset, splits, report = validated_splits(config, progress)
    (out_dir / "validation.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")

    seed = config["seed"]
    noise = config["noise"]
    flipped = {"train": 0, "val": 0}
    for offset, name in enumerate(("train", "val")):
        part = getattr(splits, name)
        part.labels, flipped[name] = apply_label_noise(part.labels, noise, seed + 1000 + offset)
    if noise["kind"] != "none":
        progress(f"label noise ({noise['kind']}, rate {noise['rate']}): flipped {flipped} labels")

    device = select_device(config["train"]["device"])
    strict = device.type == "cpu"
    set_determinism(seed, config["train"]["threads"], strict)
    progress(f"device: {device}")
    model = build_model(config["model"])
    model.set_normalisation(splits.train.images.mean(), splits.train.images.std())
    result = fit(model, splits.train, splits.val, config["train"], device, seed, progress)
    progress(f"trained {result.epochs_run} epochs in {result.seconds:.1f} s (best epoch {result.best_epoch})")
    metrics = evaluate(model, splits.val, splits.test, device, config["evaluate"])
    progress(
        f"test accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}, "
        f"ECE {metrics['ece']:.4f}, "
        f"auto-key share {metrics['auto_key_share']:.3f} at threshold {metrics['auto_key_threshold']:.4f}"
    )
    export_model(model, out_dir)
    save_test_split(out_dir / "test_split.npz", splits.test.images, splits.test.labels)
    (out_dir / "training_history.json").write_text(json.dumps(result.history, indent=1) + "\n")
    values = {k: v for k, v in config.items() if not k.startswith("_")}
    card = {
        "version": None,
        "created": utc_now(),
        "config": {"name": config["name"], "path": config.get("_path"), "values": values},
        "data": {
            "source": dataset.source,
            "sha256": dataset.sha256,
            "split_sizes": splits.sizes(),
            "test_split_sha256": file_sha256(out_dir / "test_split.npz"),
            "label_noise": {"kind": noise["kind"], "rate": noise["rate"], "flipped": flipped},
            # every data version the model saw: the reference data, then any feedback snapshot
            "versions": [
                {"kind": "reference", "source": dataset.source, "sha256": dataset.sha256},
                *([splits.feedback] if splits.feedback else []),
            ],
        },
        "metrics": metrics,
        "device": {**describe_device(device), "deterministic": "strict" if strict else "warn_only"},
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "git_commit": git_commit(),
        "model": {
            "class": "DigitsCNN",
            "parameters": count_parameters(model),
            "input": "float32 (N,1,8,8) 0..16",
        },
        "training": {
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "train_seconds": round(result.seconds, 3),
            "samples_per_second": round(result.samples_per_second, 1),
            "total_seconds": round(time.perf_counter() - started, 3),
        },
    }
    write_card(out_dir, card)
    if not (out_dir / "model.ts").is_file():
        raise TrainingError(f"export did not write {out_dir / 'model.ts'}")
    progress(f"artifacts in {out_dir}")
    return RunResult(out_dir, card, model, splits)
