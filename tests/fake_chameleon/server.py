"""Stateful fake of the Chameleon APIs that python-chi 1.2.10 and openstacksdk talk to.

One HTTP server on 127.0.0.1 serves every service under its own prefix (/identity, /reservation,
/compute, /network, /image); the Keystone catalog points at those prefixes. State moves with time:
leases PENDING -> ACTIVE (or ERROR), servers BUILD -> ACTIVE (or ERROR), deleted servers vanish after a
short delay. Floating IPs reserved by a lease appear, tagged ``reservation:<id>``, when it becomes
ACTIVE. Addresses live in 127.0.0.0/8 so that an SSH-like listener (it sends an SSH banner) can run on
each attached floating IP and each fixed IP. Knobs in FakeConfig inject faults; every request is
counted.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import re
import selectors
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PROJECT_ID = "0b1f5a2c9d7e4c3a8f6e5d4c3b2a1f00"
USER_ID = "9e8d7c6b5a4f4e3d2c1b0a9f8e7d6c5b"
PUBLIC_NET_ID = "c3f1e2d4-0000-4000-8000-00000000beef"
SHARED_NET_ID = "a1b2c3d4-0000-4000-8000-00000000cafe"
SHARED_SUBNET_ID = "a1b2c3d4-0000-4000-8000-0000000051ab"
FLAVOR_ID = "f0000000-0000-4000-8000-0000000000ba"
BLAZAR_LEASE_FMT = "%Y-%m-%dT%H:%M:%S.%f"
BLAZAR_CREATED_FMT = "%Y-%m-%d %H:%M:%S"
SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 FakeChameleon\r\n"


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
    # Timings (seconds).
    lease_start_delay: float = 0.3
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
    capacity_message: str = "Not enough hosts available"
    server_error_boots: int = 0  # the next N server boots end in ERROR
    server_fault_message: str = "No valid host was found. There are not enough hosts available."
    fip_shortfall: int = 0  # each floating-IP reservation yields this many fewer addresses
    ssh_mode: str = "banner"  # banner | silent (accepts, never speaks) | closed (no listener)
    extend_refusal: str | None = None
    ssh_port: int = 22
    fip_prefix: str = "127.0.10."
    fixed_prefix: str = "127.0.20."


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class HTTPError(Exception):
    def __init__(self, status: int, body: dict):
        super().__init__(status)
        self.status = status
        self.body = body


def _nova_error(status, message):
    kind = {400: "badRequest", 404: "itemNotFound", 409: "conflictingRequest"}.get(status, "computeFault")
    return HTTPError(status, {kind: {"code": status, "message": message}})


def _neutron_error(status, message):
    return HTTPError(status, {"NeutronError": {"type": "HTTPError", "message": message, "detail": ""}})


def _blazar_error(status, message):
    return HTTPError(status, {"error_code": status, "error_message": message, "error_name": status})


class SSHListeners:
    """SSH-like TCP listeners: accept, send a banner (or stay silent), close."""

    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._socks: dict[tuple[str, int], socket.socket] = {}
        self._lock = threading.Lock()
        self._silent: list[socket.socket] = []
        self._stop = threading.Event()
        self.mode = "banner"
        self._thread = threading.Thread(target=self._run, name="fake-ssh", daemon=True)
        self._thread.start()

    def open(self, addr: str, port: int):
        with self._lock:
            if (addr, port) in self._socks:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, port))
            s.listen(16)
            s.setblocking(False)
            self._socks[(addr, port)] = s
            self._sel.register(s, selectors.EVENT_READ)

    def close(self, addr: str, port: int):
        with self._lock:
            s = self._socks.pop((addr, port), None)
            if s is not None:
                self._sel.unregister(s)
                s.close()

    def addresses(self):
        with self._lock:
            return sorted(self._socks)

    def _run(self):
        while not self._stop.is_set():
            with self._lock:
                empty = not self._socks
            if empty:
                time.sleep(0.05)
                continue
            for key, _ in self._sel.select(timeout=0.05):
                with contextlib.suppress(OSError):
                    conn, _ = key.fileobj.accept()
                    if self.mode == "silent":
                        # Keep the connection open without a banner, as a hung sshd would.
                        self._silent.append(conn)
                        continue
                    conn.sendall(SSH_BANNER)
                    conn.close()

    def set_mode(self, mode: str):
        self.mode = mode

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for s in list(self._socks.values()) + self._silent:
                s.close()
            self._socks.clear()
            self._silent.clear()


class FakeChameleon:
    def __init__(self, config: FakeConfig | None = None):
        self.config = config or FakeConfig()
        self.lock = threading.RLock()
        self.requests: collections.Counter = collections.Counter()
        self.request_log: list[tuple[str, str]] = []
        self.bodies: list[str] = []  # every request body, to check that no secret leaks into cloud state
        self.tokens: set[str] = set()
        self.errors: list[str] = []
        self.leases: dict[str, dict] = {}
        self.servers: dict[str, dict] = {}
        self.ports: dict[str, dict] = {}
        self.fips: dict[str, dict] = {}
        self.images = {
            str(uuid.uuid5(uuid.NAMESPACE_DNS, n)): {"name": n, "created_at": "2026-10-01T00:00:00Z"}
            for n in self.config.images
        }
        self._next_fip = 10
        self._next_fixed = 10
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ssh = SSHListeners()
        self.port = 0

    # ---------- lifecycle
    def start(self) -> FakeChameleon:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-chameleon", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
        self.ssh.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, auth_type: str = "v3password") -> dict[str, str]:
        """OS_* variables that point python-chi at this fake."""
        c = self.config
        env = {
            "OS_AUTH_URL": f"{self.base}/identity/v3",
            "OS_AUTH_TYPE": auth_type,
            "OS_REGION_NAME": c.region,
            "OS_INTERFACE": "public",
            "OS_PROJECT_NAME": "CHI-000000",
            "OS_PROJECT_DOMAIN_NAME": "chameleon",
        }
        if auth_type == "v3password":
            env |= {"OS_USERNAME": c.username, "OS_PASSWORD": c.password, "OS_USER_DOMAIN_NAME": "chameleon"}
        elif auth_type == "v3applicationcredential":
            env |= {
                "OS_APPLICATION_CREDENTIAL_ID": c.app_cred_id,
                "OS_APPLICATION_CREDENTIAL_SECRET": c.app_cred_secret,
            }
        elif auth_type == "v3token":
            env |= {"OS_TOKEN": c.static_token}
        elif auth_type == "v3oidcaccesstoken":
            env |= {
                "OS_ACCESS_TOKEN": c.oidc_access_token,
                "OS_IDENTITY_PROVIDER": "chameleon",
                "OS_PROTOCOL": "openid",
            }
        return env

    # ---------- test helpers
    def request_total(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def snapshot(self) -> dict[str, set[str]]:
        """IDs of live resources, to compare before and after a run."""
        with self.lock:
            self.tick()
            return {
                "leases": {i for i, lease in self.leases.items() if lease["status"] not in ("TERMINATED",)},
                "servers": set(self.servers),
                "fips": set(self.fips),
            }

    def add_lease(self, name: str, status: str = "ACTIVE", nodes: dict | None = None, fips: int = 0) -> dict:
        """Create a lease directly (a teammate's or a dead one) without going through the API."""
        with self.lock:
            lease = self._new_lease(
                name,
                [
                    {
                        "resource_type": "physical:host",
                        "resource_properties": json.dumps(["==", "$node_type", nt]),
                        "min": n,
                        "max": n,
                    }
                    for nt, n in (nodes or {"compute_skylake": 1}).items()
                ]
                + ([{"resource_type": "virtual:floatingip", "amount": fips}] if fips else []),
                _now() + dt.timedelta(hours=8),
            )
            lease["_start_at"] = 0
            if status == "ACTIVE":
                self.tick()
            else:
                lease["status"] = status
                lease["_frozen"] = True
            return lease

    def add_server(self, name: str, reservation_id: str | None = None) -> dict:
        with self.lock:
            server = self._new_server(name, reservation_id, next(iter(self.images)), "chiops", SHARED_NET_ID)
            server["_ready_at"] = 0
            self.tick()
            return server

    def add_project_fip(self) -> dict:
        """An unreserved floating IP in the project (a teammate's, say)."""
        with self.lock:
            return self._new_fip(tags=[])

    # ---------- state
    def _new_lease(self, name, reservations, end):
        lid = str(uuid.uuid4())
        now = _now()
        res = []
        for r in reservations:
            rr = dict(r)
            rr |= {
                "id": str(uuid.uuid4()),
                "lease_id": lid,
                "status": "pending",
                "created_at": now.strftime(BLAZAR_CREATED_FMT),
                "updated_at": None,
            }
            res.append(rr)
        lease = {
            "id": lid,
            "name": name,
            "status": "PENDING",
            "project_id": PROJECT_ID,
            "user_id": USER_ID,
            "trust_id": str(uuid.uuid4()),
            "start_date": now.strftime(BLAZAR_LEASE_FMT),
            "end_date": end.strftime(BLAZAR_LEASE_FMT),
            "created_at": now.strftime(BLAZAR_CREATED_FMT),
            "updated_at": None,
            "degraded": False,
            "reservations": res,
            "events": [],
            "_start_at": time.monotonic() + self.config.lease_start_delay,
            "_end": end,
        }
        self.leases[lid] = lease
        return lease

    def _new_fip(self, tags):
        addr = f"{self.config.fip_prefix}{self._next_fip}"
        self._next_fip += 1
        fid = str(uuid.uuid4())
        fip = {
            "id": fid,
            "floating_ip_address": addr,
            "floating_network_id": PUBLIC_NET_ID,
            "router_id": None,
            "port_id": None,
            "fixed_ip_address": None,
            "status": "DOWN",
            "project_id": PROJECT_ID,
            "tenant_id": PROJECT_ID,
            "description": "",
            "tags": list(tags),
            "created_at": _iso(_now()),
            "updated_at": _iso(_now()),
            "revision_number": 0,
            "port_details": None,
            "dns_domain": "",
            "dns_name": "",
            "qos_policy_id": None,
        }
        self.fips[fid] = fip
        return fip

    def _new_server(self, name, reservation_id, image_id, key_name, net_id):
        sid = str(uuid.uuid4())
        fixed = f"{self.config.fixed_prefix}{self._next_fixed}"
        self._next_fixed += 1
        port = {
            "id": str(uuid.uuid4()),
            "name": "",
            "network_id": net_id,
            "device_id": sid,
            "device_owner": "compute:nova",
            "mac_address": f"fa:16:3e:00:{self._next_fixed // 256:02x}:{self._next_fixed % 256:02x}",
            "fixed_ips": [{"subnet_id": SHARED_SUBNET_ID, "ip_address": fixed}],
            "status": "ACTIVE",
            "admin_state_up": True,
            "project_id": PROJECT_ID,
            "tenant_id": PROJECT_ID,
            "security_groups": [],
            "tags": [],
        }
        self.ports[port["id"]] = port
        error = False
        if self.config.server_error_boots > 0:
            self.config.server_error_boots -= 1
            error = True
        server = {
            "id": sid,
            "name": name,
            "status": "BUILD",
            "tenant_id": PROJECT_ID,
            "user_id": USER_ID,
            "created": _iso(_now()),
            "updated": _iso(_now()),
            "hostId": uuid.uuid4().hex,
            "key_name": key_name,
            "image": {"id": image_id, "links": []},
            "flavor": {
                "original_name": "baremetal",
                "vcpus": 48,
                "ram": 196608,
                "disk": 240,
                "ephemeral": 0,
                "swap": 0,
                "extra_specs": {},
            },
            "metadata": {},
            "links": [],
            "accessIPv4": "",
            "accessIPv6": "",
            "config_drive": "",
            "progress": 0,
            "locked": False,
            "tags": [],
            "description": None,
            "security_groups": [],
            "OS-EXT-AZ:availability_zone": "nova",
            "OS-EXT-STS:vm_state": "building",
            "OS-EXT-STS:task_state": "spawning",
            "OS-EXT-STS:power_state": 0,
            "os-extended-volumes:volumes_attached": [],
            "_reservation": reservation_id,
            "_port": port["id"],
            "_fixed": fixed,
            "_ready_at": time.monotonic() + self.config.server_boot_delay,
            "_error": error,
            "_deleted_at": None,
        }
        self.servers[sid] = server
        return server

    def tick(self):
        """Advance every state machine to the current time (called on each request)."""
        now = time.monotonic()
        port = self.config.ssh_port
        for lease in self.leases.values():
            if lease.get("_frozen"):
                continue
            if lease["status"] == "PENDING" and now >= lease["_start_at"]:
                if self.config.lease_goes_error:
                    lease["status"] = "ERROR"
                    continue
                lease["status"] = "ACTIVE"
                lease["_fips_at"] = now + self.config.fip_appear_delay
                for r in lease["reservations"]:
                    r["status"] = "active"
            if lease["status"] == "ACTIVE" and lease.get("_fips_at") is not None and now >= lease["_fips_at"]:
                lease["_fips_at"] = None
                for r in lease["reservations"]:
                    if r["resource_type"] == "virtual:floatingip":
                        for _ in range(max(0, int(r["amount"]) - self.config.fip_shortfall)):
                            self._new_fip(tags=[f"reservation:{r['id']}"])
            if lease["status"] == "ACTIVE" and lease["_end"] <= _now():
                lease["status"] = "TERMINATED"
        for sid, s in list(self.servers.items()):
            if s["_deleted_at"] is not None:
                if now >= s["_deleted_at"]:
                    self._drop_server(sid)
                continue
            if s["status"] == "BUILD" and now >= s["_ready_at"]:
                s["OS-EXT-STS:task_state"] = None
                if s["_error"]:
                    s["status"] = "ERROR"
                    s["OS-EXT-STS:vm_state"] = "error"
                    s["fault"] = {
                        "code": 500,
                        "message": self.config.server_fault_message,
                        "created": _iso(_now()),
                    }
                else:
                    s["status"] = "ACTIVE"
                    s["OS-EXT-STS:vm_state"] = "active"
                    s["OS-EXT-STS:power_state"] = 1
                    self._listen(s["_fixed"], port)
        self.ssh.set_mode(self.config.ssh_mode)

    def _listen(self, addr, port):
        if self.config.ssh_mode != "closed":
            self.ssh.open(addr, port)

    def _drop_server(self, sid):
        s = self.servers.pop(sid)
        self.ssh.close(s["_fixed"], self.config.ssh_port)
        port = self.ports.pop(s["_port"], None)
        for fip in self.fips.values():
            if port and fip["port_id"] == port["id"]:
                self._unbind(fip)

    def _unbind(self, fip):
        if fip["port_id"]:
            self.ssh.close(fip["floating_ip_address"], self.config.ssh_port)
        fip |= {"port_id": None, "fixed_ip_address": None, "status": "DOWN", "port_details": None}

    def _server_view(self, s):
        view = {k: v for k, v in s.items() if not k.startswith("_")}
        addrs = []
        port = self.ports.get(s["_port"])
        if port and s["status"] == "ACTIVE":
            addrs.append(
                {
                    "addr": s["_fixed"],
                    "version": 4,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
                }
            )
            for fip in self.fips.values():
                if fip["port_id"] == port["id"]:
                    addrs.append(
                        {
                            "addr": fip["floating_ip_address"],
                            "version": 4,
                            "OS-EXT-IPS:type": "floating",
                            "OS-EXT-IPS-MAC:mac_addr": port["mac_address"],
                        }
                    )
        view["addresses"] = {"sharednet1": addrs} if addrs else {}
        if s["_deleted_at"] is not None:
            view["OS-EXT-STS:task_state"] = "deleting"
        return view

    def _lease_view(self, lease):
        return {k: v for k, v in lease.items() if not k.startswith("_")}

    def _reservation(self, rid):
        for lease in self.leases.values():
            for r in lease["reservations"]:
                if r["id"] == rid:
                    return lease, r
        return None, None

    def _hosts_in_use(self, node_type):
        used = 0
        for lease in self.leases.values():
            if lease["status"] in ("PENDING", "ACTIVE"):
                for r in lease["reservations"]:
                    if r["resource_type"] == "physical:host" and node_type in r.get(
                        "resource_properties", ""
                    ):
                        used += int(r["max"])
        return used

    # ---------- routing
    def handle(
        self, method: str, path: str, query: dict, body: dict | None, headers
    ) -> tuple[int, dict, dict]:
        with self.lock:
            self.tick()
            if path.startswith("/identity"):
                return self._identity(method, path[len("/identity") :], body, headers)
            token = headers.get("X-Auth-Token")
            if token not in self.tokens:
                raise HTTPError(401, {"error": {"code": 401, "message": "Authentication required"}})
            for prefix, fn in (
                ("/reservation", self._blazar),
                ("/compute", self._nova),
                ("/network", self._neutron),
                ("/image", self._glance),
            ):
                if path.startswith(prefix):
                    return fn(method, path[len(prefix) :] or "/", query, body, headers)
            raise HTTPError(404, {"error": f"no route {path}"})

    def _catalog(self):
        def svc(stype, name, suffix):
            return {
                "type": stype,
                "name": name,
                "id": uuid.uuid5(uuid.NAMESPACE_URL, stype).hex,
                "endpoints": [
                    {
                        "id": uuid.uuid5(uuid.NAMESPACE_URL, stype + iface).hex,
                        "interface": iface,
                        "region": self.config.region,
                        "region_id": self.config.region,
                        "url": f"{self.base}{suffix}",
                    }
                    for iface in ("public", "internal")
                ],
            }

        return [
            svc("identity", "keystone", "/identity/v3"),
            svc("reservation", "blazar", "/reservation/v1"),
            svc("compute", "nova", "/compute/v2.1"),
            svc("network", "neutron", "/network"),
            svc("image", "glance", "/image"),
        ]

    def _issue(self, methods, scoped=True):
        token = uuid.uuid4().hex
        self.tokens.add(token)
        body = {
            "token": {
                "methods": methods,
                "expires_at": _iso(_now() + dt.timedelta(hours=12)).replace("Z", ".000000Z"),
                "issued_at": _iso(_now()).replace("Z", ".000000Z"),
                "user": {
                    "id": USER_ID,
                    "name": self.config.username,
                    "domain": {"id": "d1", "name": "chameleon"},
                },
                "audit_ids": [uuid.uuid4().hex[:22]],
            }
        }
        if scoped:
            body["token"] |= {
                "project": {
                    "id": PROJECT_ID,
                    "name": "CHI-000000",
                    "domain": {"id": "d1", "name": "chameleon"},
                },
                "roles": [{"id": "r1", "name": "member"}],
                "catalog": self._catalog(),
            }
        return 201, body, {"X-Subject-Token": token}

    def _identity(self, method, path, body, headers):
        c = self.config
        unauthorized = HTTPError(
            401,
            {
                "error": {
                    "code": 401,
                    "message": "The request you have made requires authentication.",
                    "title": "Unauthorized",
                }
            },
        )
        if method == "GET" and path in ("", "/", "/v3", "/v3/"):
            v3 = {
                "id": "v3.14",
                "status": "stable",
                "updated": "2020-04-07T00:00:00Z",
                "links": [{"rel": "self", "href": f"{self.base}/identity/v3/"}],
                "media-types": [
                    {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
                ],
            }
            if path.startswith("/v3"):
                return 200, {"version": v3}, {}
            return 300, {"versions": {"values": [v3]}}, {}
        m = re.fullmatch(r"/v3/OS-FEDERATION/identity_providers/([^/]+)/protocols/([^/]+)/auth", path)
        if m and method in ("GET", "POST"):
            if headers.get("Authorization") != f"Bearer {c.oidc_access_token}":
                raise unauthorized
            return self._issue(["openid"], scoped=False)
        if path == "/v3/auth/tokens" and method == "POST":
            ident = (body or {}).get("auth", {}).get("identity", {})
            methods = ident.get("methods", [])
            ok = False
            if "password" in methods:
                user = ident["password"]["user"]
                ok = user.get("name") == c.username and user.get("password") == c.password
            elif "application_credential" in methods:
                ac = ident["application_credential"]
                ok = ac.get("id") == c.app_cred_id and ac.get("secret") == c.app_cred_secret
            elif "token" in methods:
                tid = ident["token"].get("id")
                ok = tid == c.static_token or tid in self.tokens
            if not ok:
                raise unauthorized
            return self._issue(methods)
        if method == "GET" and re.fullmatch(r"/v3/(users/[^/]+/projects|auth/projects)", path):
            return (
                200,
                {"projects": [{"id": PROJECT_ID, "name": "CHI-000000", "domain_id": "d1", "enabled": True}]},
                {},
            )
        if method == "GET" and path == f"/v3/projects/{PROJECT_ID}":
            return (
                200,
                {"project": {"id": PROJECT_ID, "name": "CHI-000000", "domain_id": "d1", "enabled": True}},
                {},
            )
        raise HTTPError(404, {"error": {"code": 404, "message": f"no identity route {path}"}})

    # ----- Blazar
    def _blazar(self, method, path, query, body, headers):
        if path in ("/", "", "/v1", "/v1/") and method == "GET":
            ver = {
                "id": "v1.0",
                "status": "CURRENT",
                "links": [{"rel": "self", "href": f"{self.base}/reservation/v1/"}],
            }
            return 300 if path in ("/", "") else 200, {"versions": [ver]}, {}
        m = re.fullmatch(r"/v1/leases(?:/([^/]+))?", path)
        if not m:
            raise _blazar_error(404, f"no blazar route {path}")
        ref = m.group(1)
        if ref is None and method == "GET":
            return 200, {"leases": [self._lease_view(x) for x in self.leases.values()]}, {}
        if ref is None and method == "POST":
            return self._create_lease(body)
        lease = self.leases.get(ref)
        if lease is None:
            raise _blazar_error(404, f"Object with {{'lease_id': '{ref}'}} not found")
        if method == "GET":
            return 200, {"lease": self._lease_view(lease)}, {}
        if method == "DELETE":
            del self.leases[ref]
            # Blazar releases the lease's reserved floating IPs when the lease ends.
            tags = {f"reservation:{r['id']}" for r in lease["reservations"]}
            for fid in [f for f, fip in self.fips.items() if tags & set(fip["tags"])]:
                self._unbind(self.fips[fid])
                del self.fips[fid]
            return 204, {}, {}
        if method == "PUT":
            if self.config.extend_refusal:
                raise _blazar_error(409, self.config.extend_refusal)
            if "end_date" in body:
                end = dt.datetime.strptime(body["end_date"], "%Y-%m-%d %H:%M")
                lease["_end"] = end
                lease["end_date"] = end.strftime(BLAZAR_LEASE_FMT)
            return 200, {"lease": self._lease_view(lease)}, {}
        raise _blazar_error(405, "method not allowed")

    def _create_lease(self, body):
        name = body.get("name")
        if not name:
            raise _blazar_error(400, "Lease name is required")
        want: collections.Counter = collections.Counter()
        for r in body.get("reservations", []):
            if r.get("resource_type") == "physical:host":
                props = r.get("resource_properties") or ""
                m = re.search(r'"\$node_type", "([^"]+)"', props)
                nt = m.group(1) if m else "compute_skylake"
                want[nt] += int(r.get("min", 1))
            elif r.get("resource_type") == "virtual:floatingip" and r.get("network_id") != PUBLIC_NET_ID:
                raise _blazar_error(400, "Invalid floating IP network")
        for nt, n in want.items():
            if self._hosts_in_use(nt) + n > self.config.hosts.get(nt, 0):
                raise _blazar_error(500, self.config.capacity_message)
        end_raw = body.get("end_date")
        end = dt.datetime.strptime(end_raw, "%Y-%m-%d %H:%M") if end_raw else _now() + dt.timedelta(days=1)
        lease = self._new_lease(name, body.get("reservations", []), end)
        return 201, {"lease": self._lease_view(lease)}, {}

    # ----- Nova
    def _nova(self, method, path, query, body, headers):
        ver = {
            "id": "v2.1",
            "status": "CURRENT",
            "version": "2.96",
            "min_version": "2.1",
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{self.base}/compute/v2.1/"}],
        }
        if method == "GET" and path in ("/", ""):
            return 300, {"versions": [ver]}, {}
        if method == "GET" and path in ("/v2.1", "/v2.1/"):
            return 200, {"version": ver}, {}
        path = path[len("/v2.1") :] if path.startswith("/v2.1") else path
        if method == "GET" and path in ("/flavors/detail", "/flavors"):
            flavor = {
                "id": FLAVOR_ID,
                "name": "baremetal",
                "vcpus": 48,
                "ram": 196608,
                "disk": 240,
                "OS-FLV-EXT-DATA:ephemeral": 0,
                "swap": "",
                "rxtx_factor": 1.0,
                "os-flavor-access:is_public": True,
                "links": [],
                "description": None,
                "extra_specs": {},
            }
            return 200, {"flavors": [flavor]}, {}
        m = re.fullmatch(r"/os-keypairs/([^/]+)", path)
        if m and method == "GET":
            if m.group(1) not in self.config.keypairs:
                raise _nova_error(404, f"Keypair {m.group(1)} not found for user {USER_ID}")
            return (
                200,
                {
                    "keypair": {
                        "name": m.group(1),
                        "public_key": "ssh-ed25519 AAAAC3Nza fake",
                        "type": "ssh",
                        "fingerprint": "aa:bb",
                        "user_id": USER_ID,
                        "id": 1,
                        "deleted": False,
                        "created_at": "2026-10-01T00:00:00Z",
                        "updated_at": None,
                        "deleted_at": None,
                    }
                },
                {},
            )
        if path in ("/servers/detail", "/servers") and method == "GET":
            servers = [self._server_view(s) for s in self.servers.values()]
            if "name" in query:
                servers = [s for s in servers if re.search(query["name"][0], s["name"])]
            return 200, {"servers": servers}, {}
        if path == "/servers" and method == "POST":
            return self._create_server(body)
        m = re.fullmatch(r"/servers/([^/]+)(/action)?", path)
        if m:
            s = self.servers.get(m.group(1))
            if s is None:
                raise _nova_error(404, f"Instance {m.group(1)} could not be found.")
            if method == "GET" and not m.group(2):
                return 200, {"server": self._server_view(s)}, {}
            if method == "DELETE":
                if s["_deleted_at"] is None:
                    s["_deleted_at"] = time.monotonic() + self.config.server_delete_delay
                return 204, {}, {}
        raise _nova_error(404, f"no nova route {method} {path}")

    def _create_server(self, body):
        srv = body.get("server", {})
        hints = body.get("OS-SCH-HNT:scheduler_hints") or body.get("os:scheduler_hints") or {}
        rid = hints.get("reservation")
        if srv.get("key_name") not in self.config.keypairs:
            raise _nova_error(400, "Invalid key_name provided.")
        if srv.get("imageRef") not in self.images:
            raise _nova_error(400, f"Image {srv.get('imageRef')} could not be found.")
        nets = srv.get("networks") or []
        net_id = nets[0]["uuid"] if nets and isinstance(nets, list) else SHARED_NET_ID
        server = self._new_server(srv.get("name"), rid, srv.get("imageRef"), srv.get("key_name"), net_id)
        lease, res = self._reservation(rid) if rid else (None, None)
        if res is None or lease["status"] != "ACTIVE":
            server["_error"] = True
        else:
            on_res = [
                x for x in self.servers.values() if x["_reservation"] == rid and x["_deleted_at"] is None
            ]
            if len(on_res) > int(res["max"]):
                server["_error"] = True
        return (
            202,
            {
                "server": {
                    "id": server["id"],
                    "links": [],
                    "OS-DCF:diskConfig": "MANUAL",
                    "security_groups": [],
                    "adminPass": "",
                }
            },
            {},
        )

    # ----- Neutron
    def _neutron(self, method, path, query, body, headers):
        if method == "GET" and path in ("/", ""):
            return (
                200,
                {
                    "versions": [
                        {
                            "id": "v2.0",
                            "status": "CURRENT",
                            "links": [{"rel": "self", "href": f"{self.base}/network/v2.0/"}],
                        }
                    ]
                },
                {},
            )
        path = path.removesuffix(".json")
        if not path.startswith("/v2.0"):
            raise _neutron_error(404, f"no neutron route {path}")
        path = path[len("/v2.0") :]

        def filt(items):
            for key, vals in query.items():
                if key in ("fields", "limit", "marker", "sort_key", "sort_dir"):
                    continue
                if key == "tags":
                    items = [i for i in items if set(vals[0].split(",")) <= set(i.get("tags", []))]
                else:
                    items = [i for i in items if str(i.get(key)) in vals]
            return items

        if path == "/networks" and method == "GET":
            nets = [
                {
                    "id": PUBLIC_NET_ID,
                    "name": "public",
                    "router:external": True,
                    "shared": False,
                    "status": "ACTIVE",
                    "subnets": [],
                    "project_id": "admin",
                    "tenant_id": "admin",
                    "tags": [],
                },
                {
                    "id": SHARED_NET_ID,
                    "name": "sharednet1",
                    "router:external": False,
                    "shared": True,
                    "status": "ACTIVE",
                    "subnets": [SHARED_SUBNET_ID],
                    "project_id": "admin",
                    "tenant_id": "admin",
                    "tags": [],
                },
            ]
            return 200, {"networks": filt(nets)}, {}
        m = re.fullmatch(r"/networks/([^/]+)", path)
        if m and method == "GET":
            for n in self._neutron(method, "/v2.0/networks", {}, None, headers)[1]["networks"]:
                if n["id"] == m.group(1):
                    return 200, {"network": n}, {}
            raise _neutron_error(404, f"Network {m.group(1)} could not be found.")
        if path == "/ports" and method == "GET":
            return 200, {"ports": filt(list(self.ports.values()))}, {}
        if path == "/floatingips" and method == "GET":
            return 200, {"floatingips": filt(list(self.fips.values()))}, {}
        if path == "/floatingips" and method == "POST":
            # Allocating from the public pool is what ChiOps must never do (reserved addresses only).
            return 201, {"floatingip": self._new_fip(tags=[])}, {}
        m = re.fullmatch(r"/floatingips/([^/]+)", path)
        if m:
            fip = self.fips.get(m.group(1))
            if fip is None:
                raise _neutron_error(404, f"Floating IP {m.group(1)} could not be found")
            if method == "GET":
                return 200, {"floatingip": fip}, {}
            if method == "DELETE":
                self._unbind(fip)
                del self.fips[m.group(1)]
                return 204, {}, {}
            if method == "PUT":
                port_id = (body or {}).get("floatingip", {}).get("port_id")
                if port_id is None:
                    self._unbind(fip)
                    return 200, {"floatingip": fip}, {}
                port = self.ports.get(port_id)
                if port is None:
                    raise _neutron_error(404, f"Port {port_id} could not be found.")
                if fip["port_id"] and fip["port_id"] != port_id:
                    raise _neutron_error(409, f"Floating IP {fip['id']} is already associated with a port.")
                fip |= {
                    "port_id": port_id,
                    "fixed_ip_address": port["fixed_ips"][0]["ip_address"],
                    "status": "ACTIVE",
                    "port_details": {"device_id": port["device_id"]},
                }
                self._listen(fip["floating_ip_address"], self.config.ssh_port)
                return 200, {"floatingip": fip}, {}
        if path in ("/security-groups", "/subnets") and method == "GET":
            return 200, {path.strip("/").replace("-", "_"): []}, {}
        raise _neutron_error(404, f"no neutron route {method} {path}")

    # ----- Glance
    def _glance(self, method, path, query, body, headers):
        if method == "GET" and path in ("/", "", "/versions"):
            return (
                200,
                {
                    "versions": [
                        {
                            "id": "v2.16",
                            "status": "CURRENT",
                            "links": [{"rel": "self", "href": f"{self.base}/image/v2/"}],
                        }
                    ]
                },
                {},
            )
        if method == "GET" and path == "/v2/schemas/image":
            return (
                200,
                {
                    "name": "image",
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": ["null", "string"]},
                        "status": {"type": "string"},
                        "created_at": {"type": "string"},
                        "visibility": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "additionalProperties": {"type": "string"},
                    "links": [],
                },
                {},
            )

        def view(iid, img):
            return {
                "id": iid,
                "name": img["name"],
                "status": "active",
                "created_at": img["created_at"],
                "visibility": "public",
                "tags": [],
                "build-repo": "https://github.com/ChameleonCloud/cc-images",
            }

        if method == "GET" and path == "/v2/images":
            imgs = [view(i, img) for i, img in self.images.items()]
            if "name" in query:
                imgs = [i for i in imgs if i["name"] == query["name"][0]]
            return 200, {"images": imgs, "first": "/v2/images", "schema": "/v2/schemas/images"}, {}
        m = re.fullmatch(r"/v2/images/([^/]+)", path)
        if m and method == "GET":
            if m.group(1) not in self.images:
                return 404, {"message": "image not found"}, {}
            return 200, view(m.group(1), self.images[m.group(1)]), {}
        return 404, {"message": f"no glance route {path}"}, {}


_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeChameleon
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def _serve(self, method):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        fake = self.fake
        with fake.lock:
            fake.requests[(method, _ID.sub("{id}", parts.path))] += 1
            fake.request_log.append((method, parts.path))
            if raw:
                fake.bodies.append(raw.decode(errors="replace"))
        try:
            status, out, headers = fake.handle(method, parts.path, parse_qs(parts.query), body, self.headers)
        except HTTPError as e:
            status, out, headers = e.status, e.body, {}
        except Exception as e:  # a bug in the fake must show up as a server error, not a hang
            fake.errors.append(repr(e))
            status, out, headers = 500, {"error": repr(e)}, {}
        data = b"" if status == 204 else json.dumps(out).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def do_PATCH(self):
        self._serve("PATCH")
