"""Registries for tests, made the way an operator makes them: train with training's pipeline (the reference
digits config, shortened) and register with the real writer (model_registry). No test writes registry
files."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from model_registry import Registry

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "training" / "configs" / "digits.yaml"
RootT = TypeVar("RootT", str, Path)
# One training run per (seed, epochs) per test process: registering the same artefacts again is what an
# operator does when the same recipe is registered twice, and it saves a training run per repeat.
_TRAINED: dict[tuple[int, int], Path] = {}
_CACHE = Path(tempfile.mkdtemp(prefix="chiops-trained-"))


def cleanup() -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)


atexit.register(cleanup)


def trained(seed: int, epochs: int) -> Path:
    """The artefacts of the reference recipe at (seed, epochs), trained once per test process."""
    if (seed, epochs) not in _TRAINED:
        _TRAINED[seed, epochs] = train(_CACHE / f"seed{seed}-epochs{epochs}", seed, epochs)
    return _TRAINED[seed, epochs]


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
    for seed, epochs in versions:
        registry.register(trained(seed, epochs), None)
    wanted = dict(aliases) if aliases is not None else {"production": "v1", "canary": "v2", "staging": "v2"}
    if wanted:
        registry.move_aliases(wanted, reason="test set-up")
    return root
