"""Neutron v2.0: the public and shared networks, ports, and floating IPs (tagged `reservation:<id>` when a
lease reserved them) that bind to a server's port."""

from __future__ import annotations

import re
import uuid

from tests.fake_chameleon.state import PROJECT_ID, PUBLIC_NET_ID, SHARED_NET_ID, SHARED_SUBNET_ID, State
from tests.fake_chameleon.state import neutron_error as error

NETWORKS = [
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
IGNORED_FILTERS = ("fields", "limit", "marker", "sort_key", "sort_dir")


def _filter(items, query):
    for key, vals in query.items():
        if key in IGNORED_FILTERS:
            continue
        if key == "tags":
            items = [i for i in items if set(vals[0].split(",")) <= set(i.get("tags", []))]
        else:
            items = [i for i in items if str(i.get(key)) in vals]
    return items


class Network:
    def __init__(self, state: State, base: str):
        self.state = state
        self.base = base

    # ---------- resources other services create and remove
    def new_port(self, device_id: str, server_name: str, net_id: str) -> dict:
        fixed, n = self.state.next_fixed_address(server_name)
        port = {
            "id": str(uuid.uuid4()),
            "name": "",
            "network_id": net_id,
            "device_id": device_id,
            "device_owner": "compute:nova",
            "mac_address": f"fa:16:3e:00:{n // 256:02x}:{n % 256:02x}",
            "fixed_ips": [{"subnet_id": SHARED_SUBNET_ID, "ip_address": fixed}],
            "status": "ACTIVE",
            "admin_state_up": True,
            "project_id": PROJECT_ID,
            "tenant_id": PROJECT_ID,
            "security_groups": [],
            "tags": [],
        }
        self.state.ports[port["id"]] = port
        return port

    def drop_port(self, port_id: str):
        port = self.state.ports.pop(port_id, None)
        for fip in self.state.fips.values():
            if port and fip["port_id"] == port["id"]:
                self.unbind(fip)

    def new_fip(self, tags) -> dict:
        now = self.state.clock.iso()
        fip = {
            "id": str(uuid.uuid4()),
            "floating_ip_address": self.state.next_fip_address(),
            "floating_network_id": PUBLIC_NET_ID,
            "router_id": None,
            "port_id": None,
            "fixed_ip_address": None,
            "status": "DOWN",
            "project_id": PROJECT_ID,
            "tenant_id": PROJECT_ID,
            "description": "",
            "tags": list(tags),
            "created_at": now,
            "updated_at": now,
            "revision_number": 0,
            "port_details": None,
            "dns_domain": "",
            "dns_name": "",
            "qos_policy_id": None,
        }
        self.state.fips[fip["id"]] = fip
        return fip

    def unbind(self, fip: dict):
        if fip["port_id"]:
            self.state.unlisten(fip["floating_ip_address"])
        fip |= {"port_id": None, "fixed_ip_address": None, "status": "DOWN", "port_details": None}

    def remove_tagged(self, tags: set[str]):
        """Blazar removes a lease's reserved addresses when the lease ends."""
        for fid in [f for f, fip in self.state.fips.items() if tags & set(fip["tags"])]:
            self.unbind(self.state.fips.pop(fid))

    def _bind(self, fip: dict, port_id: str) -> dict:
        port = self.state.ports.get(port_id)
        if port is None:
            raise error(404, f"Port {port_id} could not be found.")
        if fip["port_id"] and fip["port_id"] != port_id:
            raise error(409, f"Floating IP {fip['id']} is already associated with a port.")
        fip |= {
            "port_id": port_id,
            "fixed_ip_address": port["fixed_ips"][0]["ip_address"],
            "status": "ACTIVE",
            "port_details": {"device_id": port["device_id"]},
        }
        self.state.listen(fip["floating_ip_address"])
        return fip

    # ---------- API
    def handle(self, method, path, query, body, headers):
        if method == "GET" and path in ("/", ""):
            link = {"rel": "self", "href": f"{self.base}/network/v2.0/"}
            return 200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [link]}]}, {}
        path = path.removesuffix(".json")
        if not path.startswith("/v2.0"):
            raise error(404, f"no neutron route {path}")
        path = path.removeprefix("/v2.0")
        if path == "/networks" and method == "GET":
            return 200, {"networks": _filter(NETWORKS, query)}, {}
        m = re.fullmatch(r"/networks/([^/]+)", path)
        if m and method == "GET":
            for n in NETWORKS:
                if n["id"] == m.group(1):
                    return 200, {"network": n}, {}
            raise error(404, f"Network {m.group(1)} could not be found.")
        if path == "/ports" and method == "GET":
            return 200, {"ports": _filter(list(self.state.ports.values()), query)}, {}
        if path == "/floatingips" and method == "GET":
            return 200, {"floatingips": _filter(list(self.state.fips.values()), query)}, {}
        if path == "/floatingips" and method == "POST":
            # Allocating from the public pool is what ChiOps must never do (reserved addresses only).
            return 201, {"floatingip": self.new_fip(tags=[])}, {}
        m = re.fullmatch(r"/floatingips/([^/]+)", path)
        if m:
            return self._floatingip(method, m.group(1), body)
        if path in ("/security-groups", "/subnets") and method == "GET":
            return 200, {path.strip("/").replace("-", "_"): []}, {}
        raise error(404, f"no neutron route {method} {path}")

    def _floatingip(self, method, fid, body):
        fip = self.state.fips.get(fid)
        if fip is None:
            raise error(404, f"Floating IP {fid} could not be found")
        if method == "GET":
            return 200, {"floatingip": fip}, {}
        if method == "DELETE":
            self.unbind(fip)
            del self.state.fips[fid]
            return 204, {}, {}
        if method == "PUT":
            port_id = (body or {}).get("floatingip", {}).get("port_id")
            if port_id is None:
                self.unbind(fip)
                return 200, {"floatingip": fip}, {}
            return 200, {"floatingip": self._bind(fip, port_id)}, {}
        raise error(405, f"method {method} not allowed on floating IPs")
