"""A minimal client of the Prometheus HTTP API (instant and range queries), shared by both backends."""

from __future__ import annotations

import math
from typing import Any

import httpx


class PrometheusError(RuntimeError):
    pass


class Prometheus:
    def __init__(self, base_url: str, timeout: float = 10.0, headers: dict[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, headers=headers or {})

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = self._client.get(f"{self.base_url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.base_url} unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise PrometheusError(f"{path} answered {response.status_code} without JSON") from exc
        if body.get("status") != "success":
            raise PrometheusError(f"query {params.get('query')!r} failed: {body.get('error', body)}")
        return body["data"]

    def ready(self) -> bool:
        try:
            return self._client.get(f"{self.base_url}/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """Instant vector as (labels, value) pairs; NaN values are kept so callers can tell 'no data'."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"expected a vector from {expr!r}, got {data['resultType']}")
        return [(item["metric"], float(item["value"][1])) for item in data["result"]]

    def scalar(self, expr: str, at: float | None = None, default: float | None = 0.0) -> float | None:
        """Single value of an expression that aggregates to one series; `default` when it has none."""
        result = self.query(expr, at)
        if not result:
            return default
        if len(result) > 1:
            raise PrometheusError(f"{expr!r} returned {len(result)} series, expected one")
        value = result[0][1]
        return default if math.isnan(value) else value

    def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._get("/api/v1/query_range", params)
        return [
            (item["metric"], [(float(ts), float(v)) for ts, v in item["values"]]) for item in data["result"]
        ]
