"""Bare-metal servers on the lease's reservations, through python-chi's Server and Nova client.

State is read with one server listing per poll (python-chi's Server.wait() issues about eight requests
per server per poll), and a server in ERROR is an error here, not a finished wait.
"""

from __future__ import annotations

import contextlib

from chi_scripts.errors import CloudError


def list_servers() -> list:
    import chi

    return chi.nova().servers.list()


def by_name(servers, names) -> dict:
    """name -> server, refusing ambiguity (python-chi refreshes servers by name)."""
    wanted = set(names)
    found: dict = {}
    for s in servers:
        if s.name in wanted:
            if s.name in found:
                raise CloudError(f"two servers are named {s.name}; delete one so names are unique")
            found[s.name] = s
    return found


def addresses(server) -> tuple[str | None, str | None]:
    """(fixed IP, floating IP) from Nova's addresses field."""
    fixed = floating = None
    for addrs in (getattr(server, "addresses", None) or {}).values():
        for a in addrs:
            if a.get("OS-EXT-IPS:type") == "floating":
                floating = floating or a["addr"]
            elif a.get("version", 4) == 4:
                fixed = fixed or a["addr"]
    return fixed, floating


def fault_message(server) -> str:
    fault = getattr(server, "fault", None) or {}
    return fault.get("message") or "no fault message from Nova"


def lookup_image(name: str):
    import chi.image

    try:
        return chi.image.get_image(name)
    except Exception as e:
        raise CloudError(f"image {name!r}: {e}") from None


def lookup_keypair(name: str, spec_path):
    import chi.server

    keypair = chi.server.get_keypair(name)
    if not keypair.public_key:
        raise CloudError(
            f"Nova keypair {name!r} does not exist at this site (create it, or fix key_name in {spec_path})"
        )
    return keypair


def launch(name: str, reservation_id: str, image, keypair, network: str):
    import chi.server

    server = chi.server.Server(
        name=name, reservation_id=reservation_id, image=image, keypair=keypair, network_name=network
    )
    try:
        server.submit(wait_for_active=False, show=None, idempotent=False)
    except Exception as e:
        raise CloudError(f"Nova refused server {name}: {e}") from None


def delete(server_id: str):
    import chi
    from novaclient.exceptions import NotFound

    with contextlib.suppress(NotFound):
        chi.nova().servers.delete(server_id)
