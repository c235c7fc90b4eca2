"""playbooks/train.yml on the local inventory: trains on this machine and registers; skips when asked to train
only without a production model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def play(registry: Path, **extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    variables = {"chiops_registry": str(registry), **extra}
    return subprocess.run(
        ["ansible-playbook", "playbooks/train.yml", "-i", "inventories/local", "-e", json.dumps(variables)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_local_training_registers_then_skips_when_production_exists(tmp_path):
    registry = tmp_path / "registry"
    # two epochs and an open gate keep this short; the reference config's quality is tested elsewhere
    first = play(
        registry,
        chiops_train_params=["train.epochs=2"],
        chiops_train_min_accuracy=0.0,
        chiops_train_set_aliases=["production"],
        chiops_train_only_without_production=True,
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    index = json.loads((registry / "index.json").read_text())
    assert index["aliases"]["production"] == "v1"
    card = json.loads((registry / "versions" / "v1" / "card.json").read_text())
    assert card["config"]["values"]["train"]["epochs"] == 2 and card["device"]["backend"] == "cpu"

    second = play(registry, chiops_train_only_without_production=True)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "Production is v1: not training" in second.stdout
    assert set(json.loads((registry / "index.json").read_text())["versions"]) == {"v1"}


def test_a_gate_refusal_fails_the_play(tmp_path):
    result = play(
        tmp_path / "registry", chiops_train_params=["train.epochs=1"], chiops_train_min_accuracy=0.99
    )
    assert result.returncode != 0
    assert "quality gate refused registration" in result.stdout
    assert not (tmp_path / "registry" / "versions").exists()
