"""Renders the cluster's desired state once per session with the real roles (ansible-playbook), no cluster."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ENVIRONMENTS = ("staging", "canary", "production")


def run_playbook(playbook: Path, *extra: str) -> None:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
    )
    ansible_playbook = Path(sys.executable).with_name("ansible-playbook")
    result = subprocess.run(
        [str(ansible_playbook), str(playbook), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="session")
def environments_dir(tmp_path_factory) -> Path:
    """deploy/environments/<env>/ as the rollout would render it (GPU workers, 10% canary)."""
    root = tmp_path_factory.mktemp("environments")
    run_playbook(HERE / "render_environments.yml", "-e", f"render_root={root}", "-e", "gpus=1")
    return root


@pytest.fixture(scope="session")
def argocd_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("argocd")
    run_playbook(HERE / "render_argocd.yml", "-e", f"render_root={root}")
    return root / "argocd"


@pytest.fixture(scope="session")
def serve_config_fixture() -> dict:
    return yaml.safe_load((HERE / "fixtures" / "serve_config.yaml").read_text())
