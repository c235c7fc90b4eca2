"""What every service of the fake shares: its configuration, a clock the tests control, the resources and
the errors each service answers with.

Services (identity, reservation, compute, network, image) hold no state of their own: they read and change
a `State` under its lock, so Blazar ending a lease can delete Nova's servers and Neutron's addresses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid

from tests.fake_chameleon.ssh import SSHListeners

PROJECT_ID = "0b1f5a2c9d7e4c3a8f6e5d4c3b2a1f00"
USER_ID = "9e8d7c6b5a4f4e3d2c1b0a9f8e7d6c5b"
PUBLIC_NET_ID = "c3f1e2d4-0000-4000-8000-00000000beef"
SHARED_NET_ID = "a1b2c3d4-0000-4000-8000-00000000cafe"
SHARED_SUBNET_ID = "a1b2c3d4-0000-4000-8000-0000000051ab"
FLAVOR_ID = "f0000000-0000-4000-8000-0000000000ba"
BLAZAR_LEASE_FMT = "%Y-%m-%dT%H:%M:%S.%f"
BLAZAR_CREATED_FMT = "%Y-%m-%d %H:%M:%S"
BLAZAR_REQUEST_FMT = "%Y-%m-%d %H:%M"


@dataclasses.dataclass
class FakeConfig:
    region: str = "CHI@TACC"
    # Accepted credentials (a request with any other is refused with 401).
    username: str = "chiops-user"
    password: str = "fake-password"
    app_cred_id: str = "fake-app-cred-id"
    app_cred_secret: str = "fake-app-cred-secret"
    static_token: str = "fake-static-token"
    oidc_access_token: str = "fake-oidc-access-token"
    # Timings (seconds of the fake's clock). A lease is PENDING until its start (plus lease_start_delay),
    # STARTING for lease_starting_time, then ACTIVE; at its end TERMINATING until its servers are gone.
    lease_start_delay: float = 0.3
    lease_starting_time: float = 0.1
    fip_appear_delay: float = 0.0
    server_boot_delay: float = 0.4
    server_delete_delay: float = 0.2
    # Capacity: free hosts per node type.
    hosts: dict = dataclasses.field(
        default_factory=lambda: {"compute_cascadelake_r": 8, "gpu_mi100": 2, "compute_skylake": 8}
    )
    images: tuple = ("CC-Ubuntu24.04", "CC-Ubuntu24.04-ROCm", "CC-Ubuntu22.04")
    keypairs: tuple = ("chiops",)
    # Fault injection.
    lease_goes_error: bool = False
    server_error_boots: int = 0  # the next N server boots end in ERROR
    server_fault_message: str = "No valid host was found. There are not enough hosts available."
    fip_shortfall: int = 0  # each floating-IP reservation yields this many fewer addresses
    # banner: a listener sends an SSH banner on every fixed and attached floating IP; silent: accepts, never
    # speaks; closed: no listener; external: real sshds run by the test answer on those addresses.
    ssh_mode: str = "banner"
    extend_refusal: str | None = None
    ssh_port: int = 22
    # Addresses: floating IPs <fip_prefix><10..>, fixed IPs <fixed_prefix><10..> unless the server's name is
    # in fixed_ips (a test that runs real machines at known addresses).
    fip_prefix: str = "127.0.10."
    fixed_prefix: str = "127.0.20."
    fixed_ips: dict = dataclasses.field(default_factory=dict)


class Clock:
    """Real time plus an offset the tests move forward (lease ends, boot delays) without sleeping."""

    def __init__(self):
        self._offset = 0.0

    def advance(self, seconds: float):
        self._offset += seconds

    def monotonic(self) -> float:
        return time.monotonic() + self._offset

    def utcnow(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=self._offset)

    def iso(self) -> str:
        return self.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")


class HTTPError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status = status
        self.body = body


def nova_error(status, message):
    kind = {400: "badRequest", 404: "itemNotFound", 409: "conflictingRequest"}.get(status, "computeFault")
    return HTTPError(status, {kind: {"code": status, "message": message}})


def neutron_error(status, message):
    return HTTPError(status, {"NeutronError": {"type": "HTTPError", "message": message, "detail": ""}})


def blazar_error(status, message, name=None):
    """Blazar's API error body (error_name is the exception class, e.g. NotEnoughHostsAvailable)."""
    return HTTPError(status, {"error_code": status, "error_message": message, "error_name": name or status})


class State:
    """Every resource of the fake cloud, changed only under `lock`."""

    def __init__(self, config: FakeConfig):
        self.config = config
        self.clock = Clock()
        self.lock = threading.RLock()
        self.tokens: set[str] = set()
        self.leases: dict[str, dict] = {}
        self.servers: dict[str, dict] = {}
        self.ports: dict[str, dict] = {}
        self.fips: dict[str, dict] = {}
        self.images = {
            str(uuid.uuid5(uuid.NAMESPACE_DNS, n)): {"name": n, "created_at": "2026-10-01T00:00:00Z"}
            for n in config.images
        }
        self.ssh = SSHListeners()
        self._next_fip = 10
        self._next_fixed = 10

    def next_fip_address(self) -> str:
        addr = f"{self.config.fip_prefix}{self._next_fip}"
        self._next_fip += 1
        return addr

    def next_fixed_address(self, server_name: str) -> tuple[str, int]:
        """(address, a per-port counter for the MAC)."""
        n = self._next_fixed
        self._next_fixed += 1
        return self.config.fixed_ips.get(server_name, f"{self.config.fixed_prefix}{n}"), n

    def listen(self, addr: str):
        if self.config.ssh_mode in ("banner", "silent"):
            self.ssh.open(addr, self.config.ssh_port)

    def unlisten(self, addr: str):
        self.ssh.close(addr, self.config.ssh_port)

    def reservation(self, rid: str) -> tuple[dict | None, dict | None]:
        for lease in self.leases.values():
            for r in lease["reservations"]:
                if r["id"] == rid:
                    return lease, r
        return None, None
