"""Nova v2.1: flavors, keypairs, servers on a Blazar reservation (BUILD -> ACTIVE or ERROR), deletion.

A server launched on a reservation that is not ACTIVE, or beyond its host count, ends in ERROR with Nova's
"No valid host was found" fault, as Blazar's filter makes the scheduler answer.
"""

from __future__ import annotations

import re
import uuid

from tests.fake_chameleon.state import FLAVOR_ID, PROJECT_ID, SHARED_NET_ID, USER_ID, State
from tests.fake_chameleon.state import nova_error as error

FLAVOR = {
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


class Compute:
    def __init__(self, state: State, base: str, network):
        self.state = state
        self.base = base
        self.network = network

    # ---------- lifecycle
    def new_server(self, name, reservation_id, image_id, key_name, net_id) -> dict:
        state = self.state
        sid = str(uuid.uuid4())
        port = self.network.new_port(sid, name, net_id)
        error_boot = state.config.server_error_boots > 0
        if error_boot:
            state.config.server_error_boots -= 1
        now = state.clock.iso()
        server = {
            "id": sid,
            "name": name,
            "status": "BUILD",
            "tenant_id": PROJECT_ID,
            "user_id": USER_ID,
            "created": now,
            "updated": now,
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
            "_fixed": port["fixed_ips"][0]["ip_address"],
            "_ready_at": state.clock.monotonic() + state.config.server_boot_delay,
            "_error": error_boot,
            "_deleted_at": None,
        }
        state.servers[sid] = server
        return server

    def delete(self, sid: str):
        s = self.state.servers[sid]
        if s["_deleted_at"] is None:
            s["_deleted_at"] = self.state.clock.monotonic() + self.state.config.server_delete_delay

    def drop(self, sid: str):
        """The server is gone: its listener closes, its port goes, floating IPs on that port are unbound."""
        s = self.state.servers.pop(sid)
        self.state.unlisten(s["_fixed"])
        self.network.drop_port(s["_port"])

    def tick(self):
        now = self.state.clock.monotonic()
        for sid, s in list(self.state.servers.items()):
            if s["_deleted_at"] is not None:
                if now >= s["_deleted_at"]:
                    self.drop(sid)
                continue
            if s["status"] == "BUILD" and now >= s["_ready_at"]:
                s["OS-EXT-STS:task_state"] = None
                if s["_error"]:
                    s["status"] = "ERROR"
                    s["OS-EXT-STS:vm_state"] = "error"
                    s["fault"] = {
                        "code": 500,
                        "message": self.state.config.server_fault_message,
                        "created": self.state.clock.iso(),
                    }
                else:
                    s["status"] = "ACTIVE"
                    s["OS-EXT-STS:vm_state"] = "active"
                    s["OS-EXT-STS:power_state"] = 1
                    self.state.listen(s["_fixed"])

    def view(self, s: dict) -> dict:
        out = {k: v for k, v in s.items() if not k.startswith("_")}
        port = self.state.ports.get(s["_port"])
        addrs = []
        if port and s["status"] == "ACTIVE":
            mac = port["mac_address"]
            addrs.append(
                {
                    "addr": s["_fixed"],
                    "version": 4,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": mac,
                }
            )
            for fip in self.state.fips.values():
                if fip["port_id"] == port["id"]:
                    addrs.append(
                        {
                            "addr": fip["floating_ip_address"],
                            "version": 4,
                            "OS-EXT-IPS:type": "floating",
                            "OS-EXT-IPS-MAC:mac_addr": mac,
                        }
                    )
        out["addresses"] = {"sharednet1": addrs} if addrs else {}
        if s["_deleted_at"] is not None:
            out["OS-EXT-STS:task_state"] = "deleting"
        return out

    # ---------- API
    def handle(self, method, path, query, body, headers):
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
        path = path.removeprefix("/v2.1")
        if method == "GET" and path in ("/flavors/detail", "/flavors"):
            return 200, {"flavors": [FLAVOR]}, {}
        m = re.fullmatch(r"/os-keypairs/([^/]+)", path)
        if m and method == "GET":
            return self._keypair(m.group(1))
        if path in ("/servers/detail", "/servers") and method == "GET":
            servers = [self.view(s) for s in self.state.servers.values()]
            if "name" in query:
                servers = [s for s in servers if re.search(query["name"][0], s["name"])]
            return 200, {"servers": servers}, {}
        if path == "/servers" and method == "POST":
            return self._create(body or {})
        m = re.fullmatch(r"/servers/([^/]+)(/action)?", path)
        if m:
            s = self.state.servers.get(m.group(1))
            if s is None:
                raise error(404, f"Instance {m.group(1)} could not be found.")
            if method == "GET" and not m.group(2):
                return 200, {"server": self.view(s)}, {}
            if method == "DELETE":
                self.delete(s["id"])
                return 204, {}, {}
        raise error(404, f"no nova route {method} {path}")

    def _keypair(self, name):
        if name not in self.state.config.keypairs:
            raise error(404, f"Keypair {name} not found for user {USER_ID}")
        keypair = {
            "name": name,
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
        return 200, {"keypair": keypair}, {}

    def _create(self, body):
        srv = body.get("server", {})
        hints = body.get("OS-SCH-HNT:scheduler_hints") or body.get("os:scheduler_hints") or {}
        rid = hints.get("reservation")
        if srv.get("key_name") not in self.state.config.keypairs:
            raise error(400, "Invalid key_name provided.")
        if srv.get("imageRef") not in self.state.images:
            raise error(400, f"Image {srv.get('imageRef')} could not be found.")
        nets = srv.get("networks") or []
        net_id = nets[0]["uuid"] if nets and isinstance(nets, list) else SHARED_NET_ID
        server = self.new_server(srv.get("name"), rid, srv.get("imageRef"), srv.get("key_name"), net_id)
        lease, res = self.state.reservation(rid) if rid else (None, None)
        if res is None or lease["status"] != "ACTIVE":
            server["_error"] = True
        else:
            on_res = [
                x
                for x in self.state.servers.values()
                if x["_reservation"] == rid and x["_deleted_at"] is None
            ]
            if len(on_res) > int(res["max"]):
                server["_error"] = True
        out = {
            "id": server["id"],
            "links": [],
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [],
            "adminPass": "",
        }
        return 202, {"server": out}, {}
