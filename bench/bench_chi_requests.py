"""API requests per `reserve`: chi_scripts' own waits vs python-chi's wait loops, on the same fake cloud.

Both arms reserve the same environment (a control node with a floating IP and a GPU node) against a
fresh fake whose lease takes LEASE_DELAY s to start and whose servers take BOOT_DELAY s to boot. The
python-chi arm is what a notebook does with python-chi alone: Lease.submit(wait_for_active=True),
Server.submit() for each node then Server.wait(), associate_floating_ip(), check_connectivity(). python-chi
polls every 5 s (fixed); chi_scripts is run with the same 5 s poll interval so the ratio measures the
cost of each poll, not a longer interval. Prints the ratio measured in this run (goal <= 0.5).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_chameleon import FakeChameleon, FakeConfig

LEASE_DELAY = 6.0
BOOT_DELAY = 8.0
POLL = 5.0
GOAL = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake() -> FakeChameleon:
    fake = FakeChameleon(
        FakeConfig(ssh_port=free_port(), lease_start_delay=LEASE_DELAY, server_boot_delay=BOOT_DELAY)
    )
    fake.start()
    for key in [k for k in os.environ if k.startswith("OS_")]:
        del os.environ[key]
    os.environ.update(fake.env())
    return fake


def spec(fake: FakeChameleon) -> dict:
    return {
        "lease_name": "bench",
        "duration": "8h",
        "image": "CC-Ubuntu24.04",
        "key_name": "chiops",
        "ssh_port": fake.config.ssh_port,
        "poll_interval": POLL,
        "nodes": [
            {
                "name": "control",
                "node_type": "compute_cascadelake_r",
                "groups": ["kube_node"],
                "floating_ip": True,
            },
            {"name": "gpu", "node_type": "gpu_mi100", "image": "CC-Ubuntu24.04-ROCm", "groups": ["gpu_amd"]},
        ],
    }


def chi_scripts_arm() -> tuple[int, float, FakeChameleon]:
    import chi_scripts

    fake = start_fake()
    with tempfile.TemporaryDirectory() as tmp:
        inv = Path(tmp) / "bench"
        inv.mkdir()
        (inv / "chameleon.yml").write_text(yaml.safe_dump(spec(fake)))
        start = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            chi_scripts.reserve(inv)
        took = time.monotonic() - start
    fake.stop()
    return fake.request_total(), took, fake


def python_chi_arm() -> tuple[int, float, FakeChameleon]:
    import chi
    import chi.context
    import chi.lease
    import chi.server

    from chi_scripts.auth import quiet_libraries

    fake = start_fake()
    quiet_libraries()
    chi.context.reset()
    s = spec(fake)
    start = time.monotonic()
    with contextlib.redirect_stdout(io.StringIO()):
        lease = chi.lease.Lease(s["lease_name"], duration=dt.timedelta(hours=8))
        for node in s["nodes"]:
            lease.add_node_reservation(amount=1, node_type=node["node_type"])
        lease.add_fip_reservation(1)
        lease.submit(wait_for_active=True, wait_timeout=120, idempotent=True, show=None)
        fip = lease.get_reserved_floating_ips()[0]
        servers = []
        for node, reservation in zip(s["nodes"], lease.node_reservations, strict=True):
            server = chi.server.Server(
                f"bench-{node['name']}-1",
                reservation_id=reservation["id"],
                image_name=node.get("image", s["image"]),
                key_name=s["key_name"],
            )
            server.submit(wait_for_active=False, show=None)
            servers.append(server)
        for server in servers:
            server.wait(status="ACTIVE", show=None, timeout=120)
        servers[0].associate_floating_ip(fip)
        servers[0].check_connectivity(host=fip, port=s["ssh_port"], timeout=60, show=None)
    took = time.monotonic() - start
    fake.stop()
    return fake.request_total(), took, fake


def top(fake: FakeChameleon, n: int = 5) -> str:
    items = sorted(fake.requests.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{m} {p} x{c}" for (m, p), c in items)


def main() -> int:
    ours, ours_s, ours_fake = chi_scripts_arm()
    theirs, theirs_s, theirs_fake = python_chi_arm()
    ratio = ours / theirs
    print(
        f"fake timings: lease starts after {LEASE_DELAY:.0f} s, servers boot in {BOOT_DELAY:.0f} s; "
        f"poll every {POLL:.0f} s"
    )
    print(
        f"python-chi wait loops : {theirs:4d} API requests per reserve ({theirs_s:5.1f} s)  "
        f"top: {top(theirs_fake)}"
    )
    print(
        f"chi_scripts waits     : {ours:4d} API requests per reserve ({ours_s:5.1f} s)  top: {top(ours_fake)}"
    )
    verdict = "met" if ratio <= GOAL else "NOT met"
    print(f"ratio chi_scripts / python-chi = {ratio:.2f}x (goal <= {GOAL}x: {verdict})")
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
