"""Shared fixtures: real training runs, done once per session (the reference config takes seconds on an idle
CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "training" / "configs"


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    from training.config import load_config
    from training.pipeline import run

    return run(load_config(CONFIGS / "digits.yaml"), tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def weak_run(tmp_path_factory):
    """An honestly weak model: the reference recipe stopped after one epoch."""
    from training.config import load_config
    from training.pipeline import run

    return run(load_config(CONFIGS / "digits.yaml", ["train.epochs=1"]), tmp_path_factory.mktemp("weak"))
