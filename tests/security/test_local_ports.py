"""Every socket the local platform listens on is on loopback (real Ray, Serve, Prometheus, textfile exporter).

Runs playbooks/local_platform.yml on this test's own ports (tests/rollout/platform.py isolated_vars) with a
registry whose production alias is set, so the platform serves it (router + production app), lists with psutil
the listeners of every process the platform started (found by the run's own temp/run directories in their
command lines, and their children) and fails on any not on 127.0.0.0/8 or ::1, with one exception Ray does not
let us close: each Serve replica's inter-deployment gRPC server, bound to "[::]:0" in Ray Serve 2.60's code
(ray/serve/_private/replica.py; docs/serving.md). The local backend's public route (Serve's HTTP port) is
loopback too; a non-loopback bind needs local_bind_address set on purpose.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress

import psutil
import pytest

from tests.rollout.platform import isolated_vars, run_playbook
from tests.trained_registry import build_registry

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


def _title(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(proc.cmdline()[:1])
    return ""


def not_loopback(found: list[tuple[str, int, str]]) -> tuple[list, list]:
    """(listeners that break the rule, Serve replicas' inter-deployment gRPC servers on the wildcard)."""
    public = [(ip, port, who) for ip, port, who in found if not is_loopback(ip)]
    replica_grpc = [x for x in public if x[0] == "::" and x[2].startswith("ray::ServeReplica:")]
    return [x for x in public if x not in replica_grpc], replica_grpc


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
    run_dir = tmp_path / "run"
    registry = build_registry(tmp_path / "registry", versions=((0, 3),), aliases={"production": "v1"})
    extra = isolated_vars(BASE, run_dir, registry)
    with open("/tmp/chiops-live.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one live stack at a time on this machine
        try:
            run_playbook("local_platform.yml", extra)
            procs = platform_processes([extra["local_ray_temp_dir"], str(run_dir)])
            found = listeners(procs)
            replicas = [p for p in procs if _title(p).startswith("ray::ServeReplica:")]
        finally:
            run_playbook("local_down.yml", extra, check=False)
    ports = {port for _, port, _ in found}
    # The platform's ports, Serve's public route (BASE + 5) among them: the right processes were listed.
    assert {BASE, BASE + 1, BASE + 2, BASE + 5, BASE + 6, BASE + 8} <= ports, found
    public, replica_grpc = not_loopback(found)
    assert public == [], f"listeners on non-loopback addresses: {public}"
    # production's ingress and classifier and the public router: one wildcard gRPC listener each, no more
    assert len(replicas) >= 3 and len(replica_grpc) == len(replicas), (replica_grpc, replicas)
