"""Renders the cluster's desired state once per session with the real roles (ansible-playbook), no cluster."""

from pathlib import Path

import pytest
import yaml

from tests.cluster.rendering import HERE, run_playbook


@pytest.fixture(scope="session")
def rendered(tmp_path_factory) -> Path:
    """deploy/environments/<env>/ as the rollout would render it (GPU workers, 10% canary), and argocd/."""
    root = tmp_path_factory.mktemp("rendered")
    run_playbook(HERE / "render_all.yml", "-e", f"render_root={root}", "-e", "render_gpus=1")
    return root


@pytest.fixture(scope="session")
def environments_dir(rendered) -> Path:
    return rendered


@pytest.fixture(scope="session")
def argocd_dir(rendered) -> Path:
    return rendered / "argocd"


@pytest.fixture(scope="session")
def serve_config_fixture() -> dict:
    return yaml.safe_load((HERE / "fixtures" / "serve_config.yaml").read_text())
