"""Renders the cluster's desired state once per session with the code the rollout uses, no cluster: the GitOps
backend's render (serving.config + roles/environment_manifests) over a real registry, and the argocd role."""

from pathlib import Path

import pytest

from rollout.backends.gitops import GitOpsBackend
from tests.cluster.rendering import HERE, run_playbook
from tests.trained_registry import build_registry

# What the tests render: staging and canary with the candidate, production with stable and 10 % to the canary.
RENDERED = (("staging", "v2", 0), ("canary", "v2", 0), ("production", "v1", 10))


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    return build_registry(root, versions=((0, 1), (1, 1)), aliases={"production": "v1"})


@pytest.fixture(scope="session")
def render_backend(registry, tmp_path_factory) -> GitOpsBackend:
    """The backend as a GPU inventory configures it (its desired-state repo is never touched here)."""
    return GitOpsBackend(
        {
            "chiops_desired_state_repo": str(tmp_path_factory.mktemp("unused") / "desired.git"),
            "chiops_registry": str(registry),
            "environment_manifests_gpus_per_worker": 1,
        }
    )


@pytest.fixture(scope="session")
def environments_dir(render_backend, tmp_path_factory) -> Path:
    """environments/<env>/ exactly as the rollout commits it."""
    root = tmp_path_factory.mktemp("environments")
    render_backend.render_many(root, list(RENDERED))
    return root


@pytest.fixture(scope="session")
def argocd_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("argocd")
    run_playbook(HERE / "render_argocd.yml", "-e", f"render_root={root}")
    return root / "argocd"
