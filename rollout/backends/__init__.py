"""Backends by the inventory's name for them (chiops_backend). Minimal version written by the gitops branch;
the engine branch owns this module and adds the local backend."""

from __future__ import annotations

from collections.abc import Mapping

from rollout.backend import Backend, BackendError


def load(name: str, settings: Mapping) -> Backend:
    """The backend `name` ("local", or "kubernetes"/"gitops" for the GitOps backend) built from `settings`."""
    if name in ("kubernetes", "gitops"):
        from rollout.backends.gitops import GitOpsBackend

        return GitOpsBackend(settings)
    raise BackendError(f"unknown backend {name!r}; expected local or kubernetes")
