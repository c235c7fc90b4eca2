"""Backends by the inventory's `chiops_backend`: `local` (Ray Serve here) and `kubernetes` (the gitops
backend)."""

from __future__ import annotations

from typing import Any

from rollout.backend import Backend, BackendError

NAMES = ("local", "kubernetes")


def load(name: str, settings: dict[str, Any]) -> Backend:
    """The backend for `chiops_backend` = name, configured from the inventory's backend settings."""
    if name == "local":
        from rollout.backends.local import LocalBackend

        return LocalBackend(settings)
    if name == "kubernetes":
        try:
            from rollout.backends.gitops import GitOpsBackend
        except ImportError as exc:  # until the gitops backend is merged beside this module
            raise BackendError(
                f"the gitops backend (rollout/backends/gitops.py) is not available: {exc}"
            ) from None
        return GitOpsBackend(settings)
    raise BackendError(f"unknown backend {name!r}; chiops_backend is one of {', '.join(NAMES)}")
