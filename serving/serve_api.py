"""Serve's REST API on a Ray dashboard: the requests `serve deploy`, `serve config`, `serve status` and
`serve shutdown` send (and KubeRay sends for a RayService), made from this process.

A controller that polls through the `serve` CLI starts a Ray-importing Python process per poll (~2.5 s of CPU
each here), which on a 2-core machine takes a core from the very replicas it waits for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

PATH = "/api/serve/applications/"


class ServeAPIError(Exception):
    """The dashboard was unreachable or refused the request; the message says which and why."""


class ServeAPI:
    def __init__(self, dashboard: str, token_file: str | None = None, timeout_s: float = 60.0) -> None:
        self.dashboard = dashboard.rstrip("/")
        self.token_file = token_file
        self.timeout_s = timeout_s

    def _headers(self) -> dict[str, str]:
        if not self.token_file:
            return {}
        try:
            token = Path(self.token_file).read_text().strip()
        except OSError as exc:
            raise ServeAPIError(f"cannot read the Ray token {self.token_file}: {exc.strerror}") from None
        return {"Authorization": f"Bearer {token}"}

    def _request(self, method: str, **kwargs: Any) -> httpx.Response:
        try:
            response = httpx.request(
                method, self.dashboard + PATH, headers=self._headers(), timeout=self.timeout_s, **kwargs
            )
        except httpx.HTTPError as exc:
            raise ServeAPIError(f"{method} {self.dashboard}{PATH}: {exc}") from None
        if response.status_code != 200:
            raise ServeAPIError(
                f"{method} {self.dashboard}{PATH} answered {response.status_code}: {response.text[-800:]}"
            )
        return response

    def applications(self) -> dict[str, dict]:
        """Each app's details by name: status, message, deployed_app_config (what `serve config` prints)."""
        try:
            details = self._request("GET").json()
        except ValueError as exc:
            raise ServeAPIError(f"GET {self.dashboard}{PATH}: not JSON ({exc})") from None
        return details.get("applications") or {}

    def deploy(self, config: dict) -> None:
        """Make `config` (a whole multi-application config) the set of apps Serve runs."""
        self._request("PUT", json=config)

    def shutdown(self) -> None:
        """Remove every app and Serve itself."""
        self._request("DELETE")
