"""Blazar leases through python-chi: find by name, create, wait, extend, delete.

python-chi's own helpers are avoided where they hide the cloud's answer: Lease.submit() turns Blazar's
"Not enough hosts available" into "Unable to make lease", its idempotent mode creates a new lease on
every call once a TERMINATED lease of the same name exists, and its waits return normally on ERROR.
"""

from __future__ import annotations

import datetime as dt

from chi_scripts.errors import CloudError
from chi_scripts.progress import wait_for
from chi_scripts.spec import Spec

# Blazar statuses in which a lease holds (or will hold) its resources.
LIVE = ("PENDING", "STARTING", "ACTIVE", "UPDATING")
# Statuses that still need deleting on release.
RELEASABLE = (*LIVE, "ERROR", "TERMINATING")


def blazar_reason(exc: Exception) -> str:
    """Blazar's message as Chameleon sent it (blazarclient prefixes 'ERROR: ')."""
    msg = str(exc.args[0]) if exc.args else str(exc)
    return msg.removeprefix("ERROR: ").strip()


def list_leases() -> list[dict]:
    import chi

    return chi.blazar().lease.list()


def get_lease(lease_id: str) -> dict | None:
    import chi
    from blazarclient.exception import BlazarClientException

    try:
        return chi.blazar().lease.get(lease_id)
    except BlazarClientException as e:
        if getattr(e, "kwargs", {}).get("code", getattr(e, "code", None)) == 404:
            return None
        raise CloudError(f"Blazar: {blazar_reason(e)}") from None


def find_leases(name: str, statuses=LIVE) -> list[dict]:
    return [lease for lease in list_leases() if lease["name"] == name and lease["status"] in statuses]


def create_lease(spec: Spec) -> dict:
    """One node reservation per node group plus one floating-IP reservation, starting now."""
    import chi
    import chi.lease
    from blazarclient.exception import BlazarClientException

    template = chi.lease.Lease(spec.lease_name, duration=dt.timedelta(seconds=spec.duration_seconds))
    for group in spec.nodes:
        template.add_node_reservation(amount=group.count, node_type=group.node_type)
    if spec.floating_ip_count:
        template.add_fip_reservation(spec.floating_ip_count)
    try:
        return chi.blazar().lease.create(
            name=spec.lease_name,
            start=template.start_date,
            end=template.end_date,
            reservations=template.node_reservations + template.fip_reservations,
            events=[],
        )
    except BlazarClientException as e:
        raise CloudError(f"Blazar refused lease {spec.lease_name}: {blazar_reason(e)}") from None


def wait_active(spec: Spec, lease: dict) -> dict:
    def poll():
        current = get_lease(lease["id"])
        if current is None:
            raise CloudError(f"lease {spec.lease_name} ({lease['id']}) disappeared while starting")
        status = current["status"]
        if status == "ERROR":
            detail = current.get("status_reason") or "Blazar could not start it"
            raise CloudError(f"lease {spec.lease_name} ({lease['id']}) went to ERROR: {detail}")
        if status in ("TERMINATED", "TERMINATING", "DELETED"):
            raise CloudError(f"lease {spec.lease_name} ({lease['id']}) ended while starting ({status})")
        return status == "ACTIVE", status, current

    return wait_for(f"lease {spec.lease_name}", poll, spec.timeouts["lease"], spec.poll_interval)


def node_type_of(reservation: dict) -> str | None:
    import json

    try:
        props = json.loads(reservation.get("resource_properties") or "[]")
    except ValueError:
        return None

    def walk(p):
        if isinstance(p, list):
            if len(p) == 3 and p[0] == "==" and p[1] == "$node_type":
                return p[2]
            for item in p:
                found = walk(item)
                if found:
                    return found
        return None

    return walk(props)


def match_reservations(spec: Spec, lease: dict) -> dict[str, str]:
    """Node group name -> its host reservation ID (by node type and count; ties in a stable order)."""
    hosts = sorted(
        (r for r in lease.get("reservations", []) if r.get("resource_type") == "physical:host"),
        key=lambda r: r["id"],
    )
    mapping: dict[str, str] = {}
    for group in spec.nodes:
        match = next(
            (
                r
                for r in hosts
                if r["id"] not in mapping.values()
                and node_type_of(r) == group.node_type
                and int(r.get("min", 0)) == group.count
            ),
            None,
        )
        if match is None:
            raise CloudError(
                f"lease {spec.lease_name} ({lease['id']}) has no reservation for node group {group.name!r} "
                f"({group.count} x {group.node_type}); the spec changed since it was made - release it first"
            )
        mapping[group.name] = match["id"]
    return mapping


def end_timestamp(lease: dict) -> float:
    """Blazar's end_date (UTC, no zone) as Unix time."""
    end = dt.datetime.strptime(lease["end_date"], "%Y-%m-%dT%H:%M:%S.%f")
    return end.replace(tzinfo=dt.UTC).timestamp()


def seconds_left(lease: dict) -> float:
    return end_timestamp(lease) - dt.datetime.now(dt.UTC).timestamp()


def extend(lease: dict, by: str) -> dict:
    import chi
    from blazarclient.exception import BlazarClientException

    try:
        return chi.blazar().lease.update(lease["id"], prolong_for=by)
    except BlazarClientException as e:
        raise CloudError(f"Chameleon refused to extend lease {lease['name']}: {blazar_reason(e)}") from None


def delete(lease: dict):
    import chi
    from blazarclient.exception import BlazarClientException

    try:
        chi.blazar().lease.delete(lease["id"])
    except BlazarClientException as e:
        if getattr(e, "kwargs", {}).get("code", getattr(e, "code", None)) == 404:
            return
        raise CloudError(f"Blazar would not delete lease {lease['name']}: {blazar_reason(e)}") from None
