"""The lease's end as a Prometheus timestamp, for the node exporter's textfile collector.

The end only moves when the lease is extended, so the alert compares it with Prometheus' own clock
(`chiops_lease_end_timestamp_seconds - time()`): it fires as the end approaches even if nothing rewrites
the file. The refresher (`status --metrics-file F --every 5m`, a systemd timer, a CronJob) keeps it right
after an extension and removes the sample once the lease is gone.
"""

from __future__ import annotations

from pathlib import Path

LEASE_END = "chiops_lease_end_timestamp_seconds"


def write_lease_metric(path: Path, environments: list[str], lease_name: str, end_timestamp: float | None):
    """Writes chiops_lease_end_timestamp_seconds{environment,lease} atomically (no sample without a lease)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()
    gauge = Gauge(
        LEASE_END,
        "End of the environment's Chameleon lease (Unix time, seconds).",
        ["environment", "lease"],
        registry=registry,
    )
    if end_timestamp is not None:
        for env in environments:
            gauge.labels(environment=env, lease=lease_name).set(round(end_timestamp))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
