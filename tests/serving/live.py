"""A live local Ray Serve deployment of the generated config, as the integration tests see it."""

import os
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serving.config import build_serve_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENVIRONMENTS = ["canary", "production"]


class Service:
    def __init__(self, registry, key_file, http_port, metrics_port):
        self.registry, self.key_file = registry, key_file
        self.http_port, self.metrics_port = http_port, metrics_port
        self.url = f"http://127.0.0.1:{http_port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def config(self, canary_weight=0.0, **options):
        return build_serve_config(
            str(self.registry),
            ENVIRONMENTS,
            canary_weight=canary_weight,
            http_port=self.http_port,
            token_key_file=str(self.key_file),
            **options,
        )

    def replica_pids(self) -> dict:
        from ray._private import state

        return {
            a["Name"]: (a["Pid"], a["NumRestarts"])
            for a in state.actors().values()
            if a["ActorClassName"].startswith("ServeReplica") and a["State"] == "ALIVE"
        }

    def samples(self) -> list:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        return [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def total(self, name: str, **labels) -> float:
        return sum(
            s.value
            for s in self.samples()
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def wait_for(self, what: str, check, timeout_s: float = 90.0):
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not seen within {timeout_s:.0f} s: {what}")
            time.sleep(2)
