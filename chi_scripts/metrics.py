"""`status --metrics-file`: the lease's remaining time for the node exporter's textfile collector."""

from __future__ import annotations

from pathlib import Path


def write_lease_metric(path: Path, environments: list[str], lease_name: str, seconds_left: float | None):
    """Writes chiops_lease_seconds_left{environment,lease} atomically (no sample when there is no lease)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    gauge = Gauge(
        "chiops_lease_seconds_left",
        "Seconds until the environment's Chameleon lease ends.",
        ["environment", "lease"],
        registry=registry,
    )
    if seconds_left is not None:
        for env in environments:
            gauge.labels(environment=env, lease=lease_name).set(max(0.0, round(seconds_left)))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
