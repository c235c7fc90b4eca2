"""The lease's own reserved floating IPs: found by their `reservation:<id>` tag, attached by address.

Never python-chi's associate_floating_ip() without an address: it takes the project's first unbound IP,
which may be a teammate's.
"""

from __future__ import annotations

import contextlib

from chi_scripts.errors import CloudError
from chi_scripts.progress import wait_for
from chi_scripts.spec import Spec


def reserved_fips(lease: dict) -> list[dict]:
    import chi.network

    tags = {
        f"reservation:{r['id']}"
        for r in lease.get("reservations", [])
        if r.get("resource_type") == "virtual:floatingip"
    }
    if not tags:
        return []
    return sorted(
        (f for f in chi.network.list_floating_ips() if tags & set(f.get("tags") or [])),
        key=lambda f: f["floating_ip_address"],
    )


def wait_reserved(spec: Spec, lease: dict) -> list[dict]:
    """Blazar adds the addresses when the lease starts; wait (briefly) until all the spec needs exist."""
    need = spec.floating_ip_count

    def poll():
        fips = reserved_fips(lease)
        return len(fips) >= need, f"{len(fips)}/{need} reserved floating IPs", fips

    try:
        return wait_for(
            f"floating IPs of {spec.lease_name}",
            poll,
            min(spec.timeouts["lease"], 10 * spec.poll_interval),
            spec.poll_interval,
        )
    except CloudError:
        have = len(reserved_fips(lease))
        raise CloudError(
            f"lease {spec.lease_name} ({lease['id']}) has {have} reserved floating IP(s) "
            f"but the spec needs {need}"
        ) from None


def associate(server_id: str, address: str) -> str:
    import chi.server

    try:
        return chi.server.associate_floating_ip(server_id, address)
    except Exception as e:
        raise CloudError(f"could not attach floating IP {address} to server {server_id}: {e}") from None


def detach(fip: dict):
    import chi
    from neutronclient.common.exceptions import NotFound

    with contextlib.suppress(NotFound):
        chi.neutron().update_floatingip(fip["id"], {"floatingip": {"port_id": None}})


def release(fip: dict):
    """Detach (if attached) and delete one of the lease's reserved addresses."""
    import chi
    from neutronclient.common.exceptions import NotFound

    if fip.get("port_id"):
        detach(fip)
    with contextlib.suppress(NotFound):
        chi.neutron().delete_floatingip(fip["id"])
