"""The Kubernetes backend as far as it runs without a cluster: rendering each environment's desired state
through the cluster branch's environment_manifests role and committing it to a git repository, in the order the
rollout walks (staging → canary with the HTTPRoute weight → production at 100 %), then the registry promotion.
ArgoCD sync, the RayService Ready wait and the gates against the cluster's Prometheus need a cluster: not here."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.rollout.platform import ROOT, run_playbook
from tests.trained_registry import build_registry

pytestmark = [pytest.mark.slow]


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def setup(tmp_path):
    registry = build_registry(tmp_path / "registry", versions=((0, 2), (1, 2)), aliases={"production": "v1"})
    repo = tmp_path / "gitops"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init")
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump(
            {"all": {"children": {"kube_control_plane": {"hosts": {"node1": {"ansible_host": "127.0.0.1"}}}}}}
        )
    )
    (inventory / "group_vars" / "all" / "main.yml").write_text(
        yaml.safe_dump(
            {"chiops_backend": "kubernetes", "chiops_environments": ["staging", "canary", "production"]}
        )
    )
    (inventory / "group_vars" / "all" / "rollout_gates.yml").symlink_to(
        ROOT / "playbooks" / "vars" / "rollout.yml"
    )
    k8s = yaml.safe_load(
        (ROOT / "inventories" / "production" / "group_vars" / "all" / "rollout.yml").read_text()
    )
    (inventory / "group_vars" / "all" / "rollout.yml").write_text(yaml.safe_dump(k8s))
    return registry, repo, inventory, tmp_path


def test_render_and_commit_walks_the_environments(setup):
    registry, repo, inventory, tmp_path = setup
    extra = {
        "model_version": "v2",
        "chiops_repo_root": str(ROOT),
        "chiops_registry": str(registry),
        "chiops_gitops_repo": str(repo),
        "chiops_gitops_push": False,
        "rollout_kubernetes_render_only": True,
        "chiops_reports_dir": str(tmp_path / "reports"),
        "canary_weight": 0.1,
    }
    run_playbook("rollout.yml", extra, timeout=600, inventory=inventory)

    log = git(repo, "log", "--format=%s", "--reverse").splitlines()[1:]
    assert log == [
        "rollout: staging serves v2 (canary weight 0%)",
        "rollout: canary serves v2 (canary weight 0%)",
        "rollout: production serves v1 (canary weight 10%)",
        "rollout: production serves v2 (canary weight 0%)",
    ]
    # the commit that opened the canary split the public route 90/10
    split = git(repo, "show", "HEAD~1:deploy/environments/production/httproute.yaml")
    weights = [r["weight"] for rule in yaml.safe_load(split)["spec"]["rules"] for r in rule["backendRefs"]]
    assert sorted(weights) == [10, 90]
    final = yaml.safe_load(git(repo, "show", "HEAD:deploy/environments/production/rayservice.yaml"))
    assert "v2" in json.dumps(final)
    index = json.loads((registry / "index.json").read_text())
    assert (index["aliases"]["production"], index["aliases"]["previous"]) == ("v2", "v1")
