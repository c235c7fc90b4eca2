"""The generated inventory used for real: reserve through the fake Chameleon, then playbooks/nodes.yml runs
with that inventory, unedited, over real SSH against podman containers running systemd and sshd.

Addressing keeps everything on this machine. The test creates a podman network on a /24 of 10.241.0.0/16
(not podman's 10.88.0.0/16) and the fake hands out its addresses as fixed IPs; the lease's floating IP is a
loopback address (127.241.<n>.10) on which podman publishes the bastion's port 22, as Chameleon NATs a
floating IP to a node's fixed IP. The node without a floating IP is reached the way hosts.yml says: ProxyJump
through the bastion, on the podman network. The containers' host keys go into known_hosts (host key checking
stays on), the login key is what base_admin_users authorises (inventories/staging/group_vars, copied as is).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import chi_scripts
from tests.fake_chameleon import FakeChameleon, FakeConfig

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LEASE = "chiops-e2e"
BASTION, NODE = f"{LEASE}-control-1", f"{LEASE}-worker-1"


def run(*cmd, check=True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


def _free_subnet() -> int:
    """A /24 of 10.241.0.0/16 no podman network and no host route uses, and its 127.241.<n>.10 unused."""
    taken = set()
    for net in json.loads(run("podman", "network", "ls", "--format", "json").stdout or "[]"):
        for sub in net.get("subnets") or []:
            taken.add(ipaddress.ip_network(sub["subnet"]))
    taken |= {
        ipaddress.ip_network(r.split()[0], strict=False)
        for r in run("ip", "-4", "route").stdout.splitlines()
        if r[0].isdigit()
    }
    for n in range(os.getpid() % 200, os.getpid() % 200 + 50):
        net = ipaddress.ip_network(f"10.241.{n}.0/24")
        if any(net.overlaps(t) for t in taken):
            continue
        with socket.socket() as s:
            try:
                s.bind((f"127.241.{n}.10", 22))
            except OSError:
                continue
        return n
    raise AssertionError("no free 10.241.x.0/24 for the test network")


@pytest.fixture(scope="module")
def machines():
    """Two node containers on a test-made network; the bastion's sshd published on a loopback address."""
    if not shutil.which("podman"):
        pytest.fail("podman is needed (tools/molecule-host.sh installs it)")
    image = run(REPO / "tools" / "chi-node-image.sh").stdout.strip().splitlines()[-1]
    n = _free_subnet()
    net = f"chiops-chi-ssh-{os.getpid()}"
    fixed = {BASTION: f"10.241.{n}.10", NODE: f"10.241.{n}.11"}
    fip = f"127.241.{n}.10"
    names = [f"{net}-{h.rsplit('-', 2)[1]}" for h in fixed]
    run("podman", "network", "create", "--subnet", f"10.241.{n}.0/24", net)
    try:
        for (host, ip), name in zip(fixed.items(), names, strict=True):
            publish = ["--publish", f"{fip}:22:22"] if host == BASTION else []
            # NET_ADMIN: the firewall role loads nftables rules, as on a bare-metal node.
            run(
                "podman", "run", "--detach", "--name", name, "--hostname", host, "--network", net, "--ip", ip,
                *publish, "--cap-add", "NET_ADMIN", "--systemd", "always", image,
            )  # fmt: skip
        yield {
            "fixed": fixed,
            "fip": fip,
            "containers": dict(zip(fixed, names, strict=True)),
            "gateway": f"10.241.{n}.1",
        }
    finally:
        run("podman", "rm", "--force", "--time", "5", *names, check=False)
        run("podman", "network", "rm", "--force", net, check=False)


def _wait_sshd(container: str):
    for _ in range(120):
        if (
            run("podman", "exec", container, "systemctl", "is-active", "ssh", check=False).stdout.strip()
            == "active"
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"sshd did not start in {container}")


def test_nodes_playbook_over_ssh_with_the_generated_inventory(machines, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    key = home / ".ssh" / "id_ed25519"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "chiops-test", "-f", key)
    known = []
    # What cloud-init does with the Nova keypair on a Chameleon node: authorise it for cc.
    for host, container in machines["containers"].items():
        _wait_sshd(container)
        run("podman", "exec", "-i", container, "sh", "-c",
            "cat > /home/cc/.ssh/authorized_keys && chown cc:cc /home/cc/.ssh/authorized_keys",
            input=Path(f"{key}.pub").read_text())  # fmt: skip
        hostkey = run("podman", "exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[
            :2
        ]
        addr = machines["fip"] if host == BASTION else machines["fixed"][host]
        known.append(f"{addr} {' '.join(hostkey)}\n")
    (home / ".ssh" / "known_hosts").write_text("".join(known))
    # ssh reads ~ from the password database, not $HOME: name this key and known_hosts in a config file, which
    # ssh also hands to the ProxyJump hop (-F), as a user's ~/.ssh/config would.
    ssh_config = home / ".ssh" / "config"
    ssh_config.write_text(
        f"Host *\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {home}/.ssh/known_hosts\n"
        "  StrictHostKeyChecking yes\n"
    )

    config = FakeConfig(
        ssh_port=22,
        ssh_mode="external",
        fip_prefix=machines["fip"].rsplit(".", 1)[0] + ".",
        fixed_ips=machines["fixed"],
    )
    inv = tmp_path / "inventories" / "staging"
    # The environment's own group_vars (admin users, firewall settings) exactly as the repository ships them.
    shutil.copytree(REPO / "inventories" / "staging" / "group_vars", inv / "group_vars")
    spec = {
        "site": "CHI@TACC",
        "lease_name": LEASE,
        "duration": "8h",
        "image": "CC-Ubuntu24.04",
        "key_name": "chiops",
        "poll_interval": 0.2,
        "timeouts": {"lease": 30, "server": 30, "ssh": 60, "delete": 30},
        "nodes": [
            {
                "name": "control",
                "node_type": "compute_cascadelake_r",
                "groups": ["kube_control_plane", "etcd", "kube_node"],
                "floating_ip": True,
            },
            {"name": "worker", "node_type": "compute_skylake", "groups": ["kube_node"]},
        ],
    }
    (inv / "chameleon.yml").write_text(yaml.safe_dump(spec, sort_keys=False))

    with FakeChameleon(config) as fake:
        for k in [k for k in os.environ if k.startswith("OS_")]:
            monkeypatch.delenv(k)
        for k, v in fake.env().items():
            monkeypatch.setenv(k, v)
        started = time.monotonic()
        chi_scripts.reserve(inv)  # waits for the real sshd's banner on the floating IP
        reserved = time.monotonic() - started
        hosts = yaml.safe_load((inv / "hosts.yml").read_text())["all"]["hosts"]
        assert hosts[BASTION]["ansible_host"] == machines["fip"]
        assert hosts[NODE]["ansible_host"] == machines["fixed"][NODE]
        assert f"ProxyJump=cc@{machines['fip']}:22" in hosts[NODE]["ansible_ssh_common_args"]
        generated = (inv / "hosts.yml").read_bytes()

        env = {
            "PATH": f"{BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(home),
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_SSH_EXTRA_ARGS": f"-F {ssh_config}",
            "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        }
        started = time.monotonic()
        play = run(
            BIN / "ansible-playbook",
            "-i",
            inv,
            REPO / "playbooks" / "nodes.yml",
            cwd=REPO,
            env=env,
            check=False,
        )
        played = time.monotonic() - started
        print(f"\nreserve {reserved:.0f} s, nodes.yml {played:.0f} s")
        print(play.stdout[play.stdout.rindex("PLAY RECAP") :])
        assert play.returncode == 0, play.stdout[-6000:] + play.stderr[-3000:]
        recap = play.stdout[play.stdout.index("PLAY RECAP") :]
        for host in (BASTION, NODE):
            line = next(x for x in recap.splitlines() if x.startswith(host))
            assert "unreachable=0" in line and "failed=0" in line, recap
        assert (inv / "hosts.yml").read_bytes() == generated  # used as written

        # After the firewall: brand-new SSH sessions (no shared master) still reach both nodes, the bastion
        # from the floating IP's NAT (the podman gateway) and the node from the bastion (ProxyJump), as root
        # via sudo.
        fresh = dict(env, ANSIBLE_SSH_ARGS="-o ControlMaster=no -o ControlPath=none")
        probe = run(
            BIN / "ansible", "-i", inv, "all", "-m", "ansible.builtin.shell",
            "-a", "echo \"$SSH_CONNECTION\" | cut -d' ' -f1; "
                  "sudo -n nft list chain inet chiops input | grep -c 'policy drop'",
            "--one-line", cwd=REPO, env=fresh, check=False,
        )  # fmt: skip
        assert probe.returncode == 0, probe.stdout + probe.stderr
        seen = {
            line.split(" | ")[0]: line.split("(stdout) ")[1].split("\\n")
            for line in probe.stdout.splitlines()
        }
        assert seen[BASTION] == [machines["gateway"], "1"], probe.stdout
        assert seen[NODE] == [machines["fixed"][BASTION], "1"], probe.stdout

        # The firewall is real: a never-public port (Ray's dashboard) on the node answers the bastion, a
        # cluster member, and not this machine, whose address on the network is no member.
        node_c, bastion_c = machines["containers"][NODE], machines["containers"][BASTION]
        run("podman", "exec", "--detach", node_c, "python3", "-m", "http.server", "--bind", "0.0.0.0", "8265")
        target = machines["fixed"][NODE]
        check = f"import socket; socket.create_connection(('{target}', 8265), timeout=3).close()"
        for _ in range(20):
            if run("podman", "exec", bastion_c, "python3", "-c", check, check=False).returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the node's listener never answered the bastion")
        with pytest.raises(TimeoutError), socket.create_connection((target, 8265), timeout=3):
            pass

        chi_scripts.release(inv)
        assert fake.snapshot() == {"leases": set(), "servers": set(), "fips": set()}
