"""Stateful fake of the Chameleon APIs that python-chi 1.2.10 and openstacksdk talk to.

One HTTP server on 127.0.0.1 serves every service under its own prefix (/identity, /reservation,
/compute, /network, /image); the Keystone catalog points at those prefixes. Each service is its own class
(identity.py, reservation.py, compute.py, network.py, image.py) around one shared State (state.py); time
comes from a clock the tests can move forward (`fake.clock.advance(s)`). Addresses live in 127.0.0.0/8 so
that an SSH-like listener (it sends an SSH banner) can run on each attached floating IP and fixed IP, or,
with ssh_mode "external", the test runs real sshds at those addresses. Knobs in FakeConfig inject faults;
every request is counted.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tests.fake_chameleon.compute import Compute
from tests.fake_chameleon.identity import Identity
from tests.fake_chameleon.image import Image
from tests.fake_chameleon.network import Network
from tests.fake_chameleon.reservation import Reservation, reservations_json
from tests.fake_chameleon.state import SHARED_NET_ID, FakeConfig, HTTPError, State

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32}")


class FakeChameleon:
    def __init__(self, config: FakeConfig | None = None):
        self.config = config or FakeConfig()
        self.state = State(self.config)
        self.requests: collections.Counter = collections.Counter()
        self.request_log: list[tuple[str, str]] = []
        self.bodies: list[str] = []  # every request body, to check that no secret leaks into cloud state
        self.errors: list[str] = []
        self.port = 0
        self.identity = Identity(self.state, "")
        self.network = Network(self.state, "")
        self.compute = Compute(self.state, "", self.network)
        self.reservation = Reservation(self.state, "", self.compute, self.network)
        self.image = Image(self.state, "")
        self._routes = {
            "/reservation": self.reservation,
            "/compute": self.compute,
            "/network": self.network,
            "/image": self.image,
        }
        self._httpd: ThreadingHTTPServer | None = None
        self._site_httpd: ThreadingHTTPServer | None = None

    # ---------- the shared state, as tests read it
    lock = property(lambda self: self.state.lock)
    clock = property(lambda self: self.state.clock)
    leases = property(lambda self: self.state.leases)
    servers = property(lambda self: self.state.servers)
    fips = property(lambda self: self.state.fips)
    ports = property(lambda self: self.state.ports)
    ssh = property(lambda self: self.state.ssh)

    # ---------- lifecycle
    def start(self) -> FakeChameleon:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        for service in (self.identity, self.network, self.compute, self.reservation, self.image):
            service.base = self.base
        threading.Thread(target=self._httpd.serve_forever, name="fake-chameleon", daemon=True).start()
        return self

    def start_site_endpoint(self, address: str = "127.0.83.1") -> str:
        """Serve Keystone on <address>:5000/v3 too, where python-chi's site lookup sends it.

        chi.use_site() builds the auth URL as "<site web URL>:5000/v3"; with CHI_RESOURCE_API_URL set to
        this fake (before python-chi is imported), /sites.json names this address as the site's web URL.
        """
        self._site_httpd = ThreadingHTTPServer((address, 5000), self._httpd.RequestHandlerClass)
        self._site_httpd.daemon_threads = True
        threading.Thread(target=self._site_httpd.serve_forever, name="fake-site", daemon=True).start()
        self.site_web = f"http://{address}"
        return self.site_web

    def stop(self):
        for httpd in (self._httpd, self._site_httpd):
            if httpd:
                httpd.shutdown()
                httpd.server_close()
        self.state.ssh.stop()

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
    def tick(self):
        """Advance every state machine to the clock's time (also done on each request)."""
        with self.lock:
            # Servers first: a lease that is TERMINATING ends as soon as its last server is gone.
            self.compute.tick()
            self.reservation.tick()
            self.state.ssh.set_mode(self.config.ssh_mode)

    def advance(self, seconds: float):
        """Move the clock forward and let every lease and server catch up."""
        self.clock.advance(seconds)
        self.tick()

    def request_total(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def snapshot(self) -> dict[str, set[str]]:
        """IDs of live resources, to compare before and after a run."""
        with self.lock:
            self.tick()
            return {
                "leases": {i for i, lease in self.leases.items() if lease["status"] != "TERMINATED"},
                "servers": set(self.servers),
                "fips": set(self.fips),
            }

    def add_lease(self, name: str, status: str = "ACTIVE", nodes: dict | None = None, fips: int = 0) -> dict:
        """Create a lease directly (a teammate's or a dead one) without going through the API."""
        with self.lock:
            now = self.clock.utcnow()
            reservations = reservations_json(nodes or {"compute_skylake": 1}, fips)
            lease = self.reservation.new_lease(name, reservations, now, now + dt.timedelta(hours=8))
            if status == "ACTIVE":
                self.reservation.activate(lease)
                self.tick()
            else:
                lease["status"] = status
                lease["_frozen"] = True
            return lease

    def add_server(self, name: str, reservation_id: str | None = None) -> dict:
        with self.lock:
            server = self.compute.new_server(
                name, reservation_id, next(iter(self.state.images)), "chiops", SHARED_NET_ID
            )
            server["_ready_at"] = 0
            self.tick()
            return server

    def add_project_fip(self) -> dict:
        """An unreserved floating IP in the project (a teammate's, say)."""
        with self.lock:
            return self.network.new_fip(tags=[])

    def _drop_server(self, sid: str):
        """The server vanishes at once (e.g. deleted in the GUI)."""
        self.compute.drop(sid)

    # ---------- routing
    def handle(
        self, method: str, path: str, query: dict, body: dict | None, headers
    ) -> tuple[int, dict, dict]:
        with self.lock:
            self.tick()
            if path.startswith("/identity"):
                return self.identity.handle(method, path.removeprefix("/identity"), body, headers)
            if path.startswith("/v3"):  # Keystone as python-chi's site lookup addresses it
                return self.identity.handle(method, path, body, headers)
            if path == "/sites.json" and method == "GET":
                return 200, {"items": self._sites()}, {}
            if headers.get("X-Auth-Token") not in self.state.tokens:
                raise HTTPError(401, {"error": {"code": 401, "message": "Authentication required"}})
            for prefix, service in self._routes.items():
                if path.startswith(prefix):
                    return service.handle(method, path.removeprefix(prefix) or "/", query, body, headers)
            raise HTTPError(404, {"error": f"no route {path}"})

    def _sites(self):
        return [
            {
                "name": self.config.region,
                "web": getattr(self, "site_web", self.base),
                "location": "Austin, Texas, USA",
                "user_support_contact": "help@example.org",
                "site_class": "baremetal",
            }
        ]


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
