"""Blazar v1 leases, with Blazar's lifecycle and answers where chi_scripts depends on them.

- Status: PENDING until the start, STARTING, then ACTIVE (or ERROR); at the end date TERMINATING (the
  lease's servers are deleted and its reserved floating IPs removed), then TERMINATED once they are gone.
  Deleting a live lease ends it the same way, then removes it.
- Names are not unique: Blazar's leases table has no unique constraint on `name` (its manager only maps a
  database duplicate-entry error to LeaseNameAlreadyExists), so a second lease of the same name is created;
  GET /leases/<name> is a 404 (leases are addressed by ID).
- Capacity: a host reservation beyond the free hosts of its node type is refused as Blazar's manager does,
  500 NotEnoughHostsAvailable "Not enough hosts available" (python-chi hides it; chi_scripts shows it).
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import uuid

from tests.fake_chameleon.state import (
    BLAZAR_CREATED_FMT,
    BLAZAR_LEASE_FMT,
    BLAZAR_REQUEST_FMT,
    PROJECT_ID,
    PUBLIC_NET_ID,
    USER_ID,
    State,
    blazar_error,
)

HOLDS_HOSTS = ("PENDING", "STARTING", "ACTIVE", "UPDATING", "TERMINATING")


def _node_type(reservation: dict) -> str:
    m = re.search(r'"\$node_type", "([^"]+)"', reservation.get("resource_properties") or "")
    return m.group(1) if m else "compute_skylake"


class Reservation:
    def __init__(self, state: State, base: str, compute, network):
        self.state = state
        self.base = base
        self.compute = compute
        self.network = network

    # ---------- lifecycle
    def new_lease(self, name: str, reservations: list[dict], start: dt.datetime, end: dt.datetime) -> dict:
        clock = self.state.clock
        lid = str(uuid.uuid4())
        created = clock.utcnow().strftime(BLAZAR_CREATED_FMT)
        res = [
            dict(r)
            | {
                "id": str(uuid.uuid4()),
                "lease_id": lid,
                "status": "pending",
                "created_at": created,
                "updated_at": None,
            }
            for r in reservations
        ]
        lease = {
            "id": lid,
            "name": name,
            "status": "PENDING",
            "project_id": PROJECT_ID,
            "user_id": USER_ID,
            "trust_id": str(uuid.uuid4()),
            "start_date": start.strftime(BLAZAR_LEASE_FMT),
            "end_date": end.strftime(BLAZAR_LEASE_FMT),
            "created_at": created,
            "updated_at": None,
            "degraded": False,
            "reservations": res,
            "events": [
                self._event(lid, "start_lease", start),
                self._event(lid, "end_lease", end),
            ],
            "_start_at": clock.monotonic()
            + max(0.0, (start - clock.utcnow()).total_seconds())
            + self.state.config.lease_start_delay,
            "_end": end,
        }
        self.state.leases[lid] = lease
        return lease

    @staticmethod
    def _event(lease_id, kind, when):
        return {
            "id": str(uuid.uuid4()),
            "lease_id": lease_id,
            "event_type": kind,
            "time": when.strftime(BLAZAR_LEASE_FMT),
            "status": "UNDONE",
        }

    @staticmethod
    def _mark(lease, kind, status):
        for event in lease["events"]:
            if event["event_type"] == kind:
                event["status"] = status

    def activate(self, lease: dict):
        lease["status"] = "ACTIVE"
        self._mark(lease, "start_lease", "DONE")
        lease["_fips_at"] = self.state.clock.monotonic() + self.state.config.fip_appear_delay
        for r in lease["reservations"]:
            r["status"] = "active"

    def _reserved_fips(self, lease: dict):
        config = self.state.config
        for r in lease["reservations"]:
            if r["resource_type"] == "virtual:floatingip":
                for _ in range(max(0, int(r["amount"]) - config.fip_shortfall)):
                    self.network.new_fip(tags=[f"reservation:{r['id']}"])

    def _servers_of(self, lease: dict) -> list[str]:
        rids = {r["id"] for r in lease["reservations"]}
        return [sid for sid, s in self.state.servers.items() if s["_reservation"] in rids]

    def _end(self, lease: dict):
        """Blazar's on_end: the reserved hosts' servers are deleted, the reserved addresses removed."""
        lease["status"] = "TERMINATING"
        self._mark(lease, "end_lease", "IN_PROGRESS")
        for sid in self._servers_of(lease):
            self.compute.delete(sid)
        self.network.remove_tagged({f"reservation:{r['id']}" for r in lease["reservations"]})

    def tick(self):
        clock, config = self.state.clock, self.state.config
        now = clock.monotonic()
        for lease in self.state.leases.values():
            if lease.get("_frozen"):
                continue
            status = lease["status"]
            if status == "PENDING" and now >= lease["_start_at"]:
                lease["status"] = "STARTING"
                self._mark(lease, "start_lease", "IN_PROGRESS")
                lease["_active_at"] = now + config.lease_starting_time
            elif status == "STARTING" and now >= lease["_active_at"]:
                if config.lease_goes_error:
                    lease["status"] = "ERROR"
                    self._mark(lease, "start_lease", "ERROR")
                else:
                    self.activate(lease)
            elif status == "ACTIVE":
                if lease.get("_fips_at") is not None and now >= lease["_fips_at"]:
                    lease["_fips_at"] = None
                    self._reserved_fips(lease)
                if lease["_end"] <= clock.utcnow():
                    self._end(lease)
            elif status == "TERMINATING" and not self._servers_of(lease):
                lease["status"] = "TERMINATED"
                self._mark(lease, "end_lease", "DONE")
                for r in lease["reservations"]:
                    r["status"] = "deleted"

    def _hosts_in_use(self, node_type: str) -> int:
        return sum(
            int(r["max"])
            for lease in self.state.leases.values()
            if lease["status"] in HOLDS_HOSTS
            for r in lease["reservations"]
            if r["resource_type"] == "physical:host" and _node_type(r) == node_type
        )

    @staticmethod
    def view(lease: dict) -> dict:
        return {k: v for k, v in lease.items() if not k.startswith("_")}

    # ---------- API
    def handle(self, method, path, query, body, headers):
        if path in ("/", "", "/v1", "/v1/") and method == "GET":
            ver = {
                "id": "v1.0",
                "status": "CURRENT",
                "links": [{"rel": "self", "href": f"{self.base}/reservation/v1/"}],
            }
            return 300 if path in ("/", "") else 200, {"versions": [ver]}, {}
        m = re.fullmatch(r"/v1/leases(?:/([^/]+))?", path)
        if not m:
            raise blazar_error(404, f"no blazar route {path}")
        ref = m.group(1)
        if ref is None and method == "GET":
            return 200, {"leases": [self.view(x) for x in self.state.leases.values()]}, {}
        if ref is None and method == "POST":
            return self._create(body or {})
        lease = self.state.leases.get(ref)
        if lease is None:
            raise blazar_error(404, f"Object with {{'lease_id': '{ref}'}} not found", "NotFound")
        if method == "GET":
            return 200, {"lease": self.view(lease)}, {}
        if method == "DELETE":
            if lease["status"] in ("STARTING", "ACTIVE", "UPDATING"):
                self._end(lease)
            self.network.remove_tagged({f"reservation:{r['id']}" for r in lease["reservations"]})
            del self.state.leases[ref]
            return 204, {}, {}
        if method == "PUT":
            return self._update(lease, body or {})
        raise blazar_error(405, "method not allowed")

    def _update(self, lease, body):
        if self.state.config.extend_refusal:
            raise blazar_error(409, self.state.config.extend_refusal, "NotEnoughResourcesAvailable")
        if lease["status"] not in ("PENDING", "ACTIVE"):
            raise blazar_error(409, f"Lease {lease['id']} is in {lease['status']} status", "InvalidStatus")
        if "end_date" in body:
            end = dt.datetime.strptime(body["end_date"], BLAZAR_REQUEST_FMT)
            lease["_end"] = end
            lease["end_date"] = end.strftime(BLAZAR_LEASE_FMT)
            for event in lease["events"]:
                if event["event_type"] == "end_lease":
                    event["time"] = lease["end_date"]
        lease["updated_at"] = self.state.clock.utcnow().strftime(BLAZAR_CREATED_FMT)
        return 200, {"lease": self.view(lease)}, {}

    def _create(self, body):
        name = body.get("name")
        if not name:
            raise blazar_error(400, "Missing parameter: name", "MissingParameter")
        want: collections.Counter = collections.Counter()
        for r in body.get("reservations", []):
            if r.get("resource_type") == "physical:host":
                want[_node_type(r)] += int(r.get("min", 1))
            elif r.get("resource_type") == "virtual:floatingip" and r.get("network_id") != PUBLIC_NET_ID:
                raise blazar_error(400, "Invalid floating IP network", "InvalidInput")
        for node_type, n in want.items():
            if self._hosts_in_use(node_type) + n > self.state.config.hosts.get(node_type, 0):
                raise blazar_error(500, "Not enough hosts available", "NotEnoughHostsAvailable")
        now = self.state.clock.utcnow()
        start_raw, end_raw = body.get("start_date", "now"), body.get("end_date")
        start = now if start_raw in (None, "now") else dt.datetime.strptime(start_raw, BLAZAR_REQUEST_FMT)
        end = dt.datetime.strptime(end_raw, BLAZAR_REQUEST_FMT) if end_raw else now + dt.timedelta(days=1)
        if end <= start:
            raise blazar_error(400, "End date must be later than the start date", "InvalidDate")
        lease = self.new_lease(name, body.get("reservations", []), start, end)
        return 201, {"lease": self.view(lease)}, {}


def reservations_json(nodes: dict, fips: int) -> list[dict]:
    """The reservations python-chi sends for {node_type: count} and `fips` addresses."""
    return [
        {
            "resource_type": "physical:host",
            "resource_properties": json.dumps(["==", "$node_type", nt]),
            "min": n,
            "max": n,
        }
        for nt, n in nodes.items()
    ] + (
        [{"resource_type": "virtual:floatingip", "amount": fips, "network_id": PUBLIC_NET_ID}] if fips else []
    )
