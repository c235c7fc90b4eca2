"""What a rollout backend does: the only part of a rollout that differs between the local Ray and GitOps
paths.

The engine (steps, gates, evidence loop, state, ledger, reports) is shared; a backend only deploys a version
into an environment, sets the public split, proves an environment serves a version, and removes a candidate.
Weights are fractions 0.0-1.0 here; a backend that needs percentages (HTTPRoute) converts at its own edge.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol, runtime_checkable

Progress = Callable[[str], None]


class BackendError(Exception):
    """A backend operation failed or timed out; the message says what was last seen (the engine rolls
    back)."""


@dataclasses.dataclass(frozen=True)
class Change:
    """What one backend call changed, for the ledger: a git commit on gitops, nothing extra locally."""

    description: str
    commit: str | None = None


@runtime_checkable
class Backend(Protocol):
    name: str

    def deploy(self, environment: str, version: str) -> Change:
        """Make `environment` serve `version` (no public traffic changes)."""
        ...

    def set_split(self, stable: str, candidate: str | None, weight: float) -> Change:
        """Send `weight` of public /predict traffic to the canary (serving `candidate`), the rest to
        production (serving `stable`). `candidate=None` means weight 0 and no canary behind the route."""
        ...

    def wait_serving(self, environment: str, version: str, timeout_s: float, progress: Progress) -> None:
        """Return once the environment's newest generation is Ready *and* its /version answers `version`.
        A previous generation that is still Ready never satisfies this. Raise BackendError on timeout."""
        ...

    def wait_split(self, weight: float, timeout_s: float, progress: Progress) -> None:
        """Return once the public route applies `weight`; raise BackendError on timeout."""
        ...

    def remove(self, environment: str) -> Change:
        """Take a candidate environment (staging or canary) down; idempotent."""
        ...

    def url(self, environment: str) -> str:
        """Base URL the controller reaches `environment` through (the staging checks call it)."""
        ...

    def prometheus_url(self) -> str:
        """Base URL of the Prometheus HTTP API whose series the gates read."""
        ...
