"""Every socket the local platform listens on is on loopback (real Ray, Prometheus, textfile exporter).

Runs playbooks/local_platform.yml on this test's own ports (tests/rollout/platform.py isolated_vars), lists
with psutil the listeners of every process the platform started (found by the run's own temp/run directories
in their command lines, and their children) and fails on any not on 127.0.0.0/8 or ::1. The local backend's
public route (Serve's HTTP port) is loopback too; a non-loopback bind needs local_bind_address set on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress

import psutil
import pytest

from tests.rollout.platform import isolated_vars, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BASE = 31500


def platform_processes(markers: list[str]) -> list[psutil.Process]:
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if any(m in cmdline for m in markers):
            found[proc.pid] = proc
            with contextlib.suppress(psutil.Error):
                for child in proc.children(recursive=True):
                    found[child.pid] = child
    return list(found.values())


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or 127.x IPv4-mapped (Ray's gRPC servers list as [::ffff:127.0.0.1])."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def listeners(procs: list[psutil.Process]) -> list[tuple[str, int, str]]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    out.append((conn.laddr.ip, conn.laddr.port, " ".join(proc.cmdline()[:2])))
    return out


@pytest.mark.timeout(900)
def test_local_platform_listens_on_loopback_only(tmp_path):
    run_dir, registry = tmp_path / "run", tmp_path / "registry"
    extra = isolated_vars(BASE, run_dir, registry)
    with open("/tmp/chiops-live.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one live stack at a time on this machine
        try:
            run_playbook("local_platform.yml", extra)
            procs = platform_processes([extra["local_ray_temp_dir"], str(run_dir)])
            found = listeners(procs)
        finally:
            run_playbook("local_down.yml", extra, check=False)
    ports = {port for _, port, _ in found}
    # The platform's own ports are among them: the check looked at the right processes.
    assert {BASE, BASE + 1, BASE + 2, BASE + 6, BASE + 8} <= ports, found
    public = [(ip, port, who) for ip, port, who in found if not is_loopback(ip)]
    assert public == [], f"listeners on non-loopback addresses: {public}"
