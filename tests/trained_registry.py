"""Registries for tests, made the way an operator makes them: train with training's pipeline (the reference
digits config, shortened) and register with the real writer (model_registry). No test writes registry files."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from model_registry import Registry

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "configs" / "digits.yaml"
RootT = TypeVar("RootT", str, Path)


def train(out_dir: Path, seed: int, epochs: int) -> Path:
    """One short real training run of the reference recipe; returns its artifact directory."""
    from training.config import load_config
    from training.pipeline import run

    overrides = [f"seed={seed}", f"train.epochs={epochs}", f"train.patience={epochs + 1}"]
    run(load_config(CONFIG, overrides), out_dir)
    return out_dir


def build_registry(
    root: RootT,
    versions: Sequence[tuple[int, int]] = ((0, 3), (1, 6)),
    aliases: Mapping[str, str | None] | None = None,
) -> RootT:
    """Train one model per (seed, epochs), register them in order as v1, v2, … (no gate), then move `aliases`
    (default: production v1, canary and staging v2). `root` is a directory or an s3:// URL; returns it."""
    registry = Registry(root)
    with tempfile.TemporaryDirectory(prefix="chiops-train-") as tmp:
        for i, (seed, epochs) in enumerate(versions):
            registry.register(train(Path(tmp) / f"run{i}", seed, epochs), None)
    wanted = dict(aliases) if aliases is not None else {"production": "v1", "canary": "v2", "staging": "v2"}
    if wanted:
        registry.move_aliases(wanted, reason="test set-up")
    return root
