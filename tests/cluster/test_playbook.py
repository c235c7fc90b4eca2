"""playbooks/cluster.yml runs for Chameleon inventories only."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.cluster.rendering import ROOT


def run_cluster_playbook(inventory: Path, *extra: str) -> str:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_NOCOLOR="1",
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "playbooks/cluster.yml",
            "-i",
            str(inventory),
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_local_inventory_selects_no_host():
    out = run_cluster_playbook(ROOT / "inventories" / "local", "--list-hosts")
    assert out.count("hosts (0)") == 2, out


def chameleon_like_inventory(tmp_path):
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "main.yml").write_text("chiops_backend: kubernetes\n")
    hosts = {
        "all": {
            "children": {
                "kube_control_plane": {"hosts": {"node1": {"ip": "10.0.0.1", "access_ip": "10.0.0.1"}}},
                "etcd": {"hosts": {"node1": None}},
                "kube_node": {"hosts": {"node1": None, "node2": {"ip": "10.0.0.2", "access_ip": "10.0.0.2"}}},
            }
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return tmp_path


def test_chameleon_inventory_runs_on_the_first_control_plane_node(tmp_path):
    out = run_cluster_playbook(chameleon_like_inventory(tmp_path), "--list-hosts")
    assert out.count("hosts (1)") == 2 and "node1" in out and "node2" not in out, out


def test_an_inventory_sharing_another_cluster_runs_nothing(tmp_path):
    inventory = chameleon_like_inventory(tmp_path / "canary")
    (inventory / "chameleon.yml").write_text("shared_with: production\n")
    out = run_cluster_playbook(inventory)
    assert "canary runs in production" in out and "-i inventories/production" in out, out
    assert "TASK [kubespray" not in out and "TASK [argocd" not in out, out
