"""ChiOps on Chameleon: leases, bare-metal servers and floating IPs from a spec, to an Ansible inventory.

    from chi_scripts import reserve, status, extend, release, inventory
    reserve("inventories/staging")

python-chi takes seconds to import, so nothing here imports it until an operation runs.
"""

from __future__ import annotations

__all__ = ["extend", "inventory", "release", "reserve", "status"]


def __getattr__(name):
    if name in __all__:
        from chi_scripts import operations

        return getattr(operations, name)
    raise AttributeError(f"module 'chi_scripts' has no attribute {name!r}")
