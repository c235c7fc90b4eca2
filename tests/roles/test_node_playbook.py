"""playbooks/nodes.yml never reaches the local inventory and reaches every node of a Chameleon-style one."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "nodes.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def list_hosts(inventory):
    """{play name: [hosts]} as ansible-playbook --list-hosts reports them."""
    out = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), "--list-hosts", str(PLAYBOOK)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": "/usr/bin:/bin"},
        timeout=120,
    ).stdout
    plays, current = {}, None
    for line in out.splitlines():
        match = re.match(r"\s*play #\d+ \((.*)\): (.*)\tTAGS", line)
        if match:
            current = match.group(2)
            plays[current] = []
        elif current and line.startswith("      ") and line.strip() and "pattern:" not in line:
            plays[current].append(line.strip())
    return plays


def test_local_inventory_gets_no_node_role():
    plays = list_hosts(ROOT / "inventories" / "local")
    assert len(plays) == 3
    assert all(hosts == [] for hosts in plays.values()), plays


def test_chameleon_inventory_gets_base_and_firewall_everywhere_and_rocm_on_gpu_nodes(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "kube_control_plane": {"hosts": {"node-1": {"ip": "10.52.0.11"}}},
                        "kube_node": {
                            "hosts": {
                                "node-1": {},
                                "node-2": {"ip": "10.52.0.12"},
                                "gpu-1": {"ip": "10.52.0.13"},
                            }
                        },
                        "gpu_amd": {"hosts": {"gpu-1": {}}},
                        # a stray local host must stay untouched even inside a Chameleon inventory
                        "chiops_local": {"hosts": {"localhost": {"ansible_connection": "local"}}},
                    }
                }
            }
        )
    )
    plays = list_hosts(inventory)
    assert sorted(plays["Harden every Chameleon node"]) == ["gpu-1", "node-1", "node-2"]
    assert sorted(plays["Firewall every Chameleon node"]) == ["gpu-1", "node-1", "node-2"]
    assert plays["AMD GPU driver and ROCm"] == ["gpu-1"]


def test_playbook_names_the_three_roles_in_order():
    plays = yaml.safe_load(PLAYBOOK.read_text())
    assert [p["roles"][0]["role"] for p in plays] == ["base", "firewall", "rocm"]
    assert all("chiops_local" in p["hosts"] for p in plays)
