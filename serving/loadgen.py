"""Load generator: real test-split images at a target rate, delayed feedback, client-side metrics.

It is the client's view a rollout checks the service's own metrics against. Every run is bounded (by duration
and/or count) and stops by itself; it only talks to loopback addresses.

    python -m serving.loadgen --url http://127.0.0.1:8000 --registry registry --version production \
        --rate 20 --duration 60 --feedback-delay 2 --metrics-port 9108
"""

import argparse
import asyncio
import ipaddress
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from model_registry import Registry
from serving import metric_names as names

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN_VERSION = "unknown"


def require_loopback(url: str) -> str:
    """Refuse any target that does not resolve to a loopback address only."""
    host = urlsplit(url).hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc}") from exc
    outside = sorted(a for a in addresses if not ipaddress.ip_address(a).is_loopback)
    if outside:
        raise ValueError(f"load generator targets loopback only; {host!r} resolves to {outside}")
    return url.rstrip("/")


class ClientMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            names.CLIENT_REQUESTS_TOTAL.removesuffix("_total"),
            "Requests the load generator sent, by model version that answered and outcome.",
            [names.MODEL_VERSION, names.OUTCOME],
            registry=self.registry,
        )
        self.latency = Histogram(
            names.CLIENT_LATENCY_SECONDS,
            "Latency the load generator saw, by model version that answered.",
            [names.MODEL_VERSION],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.feedback = Counter(
            names.CLIENT_FEEDBACK_TOTAL.removesuffix("_total"),
            "Feedback requests the load generator sent, by outcome.",
            [names.OUTCOME],
            registry=self.registry,
        )


@dataclass
class Summary:
    sent: int = 0
    outcomes: dict = field(default_factory=dict)
    by_version: dict = field(default_factory=dict)
    correct_by_version: dict = field(default_factory=dict)
    feedback_sent: int = 0
    feedback_failed: int = 0
    feedback_unsent: int = 0
    latencies_s: list = field(default_factory=list)
    # (sent, answered: seconds since start; model_version; outcome)
    records: list = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def failures(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "ok")

    def as_dict(self) -> dict:
        lat = np.array(self.latencies_s) if self.latencies_s else np.array([np.nan])
        return {
            "sent": self.sent,
            "failures": self.failures,
            "outcomes": self.outcomes,
            "by_version": self.by_version,
            "client_accuracy": {
                v: round(self.correct_by_version.get(v, 0) / n, 4) for v, n in self.by_version.items() if n
            },
            "feedback_sent": self.feedback_sent,
            "feedback_failed": self.feedback_failed,
            "feedback_unsent": self.feedback_unsent,
            "latency_p50_ms": round(float(np.nanpercentile(lat, 50)) * 1000, 2),
            "latency_p99_ms": round(float(np.nanpercentile(lat, 99)) * 1000, 2),
            "duration_s": round(self.duration_s, 2),
            "achieved_rps": round(self.sent / self.duration_s, 2) if self.duration_s else 0.0,
        }


def _outcome(status: int) -> str:
    return "ok" if status == 200 else f"http_{status // 100}xx"


class LoadGenerator:
    def __init__(
        self,
        base_url: str,
        images: np.ndarray,
        labels: np.ndarray,
        rate: float = 10.0,
        duration_s: float = 30.0,
        count: int | None = None,
        batch: int = 8,
        feedback_delay_s: float | None = 2.0,
        concurrency: int = 32,
        timeout_s: float = 10.0,
        predict_path: str = "/predict",
        feedback_path: str = "/feedback",
        metrics: ClientMetrics | None = None,
        keep_records: bool = False,
        seed: int = 0,
    ):
        if rate <= 0 or duration_s <= 0 or batch < 1 or concurrency < 1:
            raise ValueError("rate, duration, batch and concurrency must be positive")
        self.base_url = require_loopback(base_url)
        self.images, self.labels = images, labels
        self.rate, self.duration_s, self.count, self.batch = rate, duration_s, count, batch
        self.feedback_delay_s, self.concurrency, self.timeout_s = feedback_delay_s, concurrency, timeout_s
        self.predict_path, self.feedback_path = predict_path, feedback_path
        self.metrics = metrics or ClientMetrics()
        self.keep_records = keep_records
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask a running generator (in another thread) to stop early."""
        self._stop.set()

    def _count(self, table: dict, key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n

    async def _feedback(self, client, summary: Summary, items) -> None:
        await asyncio.sleep(self.feedback_delay_s)
        # One request's labels go out together, so each waits at most one client timeout, not one per image.
        results = await asyncio.gather(*(self._post_feedback(client, item) for item in items))
        for ok in results:
            summary.feedback_sent += 1
            summary.feedback_failed += 0 if ok else 1
            self.metrics.feedback.labels("ok" if ok else "error").inc()

    async def _post_feedback(self, client, item) -> bool:
        token, label, image = item
        # the image lets a feedback store keep what was predicted (serving/feedback.py)
        body = {"prediction_id": token, "label": label, "image": image}
        try:
            r = await client.post(self.feedback_path, json=body)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    async def _one(self, client, summary: Summary, sem, started: float, tasks: set) -> None:
        idx = self._rng.integers(0, len(self.images), size=self.batch)
        body = {"images": self.images[idx].tolist()}
        t0 = time.perf_counter()
        version, outcome, payload = UNKNOWN_VERSION, "error", None
        try:
            r = await client.post(self.predict_path, json=body)
            outcome = _outcome(r.status_code)
            if r.status_code == 200:
                payload = r.json()
                version = payload.get("model_version", UNKNOWN_VERSION)
        except (httpx.HTTPError, ValueError):
            outcome = "error"
        finally:
            sem.release()
        latency = time.perf_counter() - t0
        self.metrics.requests.labels(version, outcome).inc()
        self._count(summary.outcomes, outcome)
        if outcome == "ok":
            self.metrics.latency.labels(version).observe(latency)
            summary.latencies_s.append(latency)
            self._count(summary.by_version, version)
            preds = payload["predictions"]
            truth = self.labels[idx].tolist()
            correct = sum(p["class"] == y for p, y in zip(preds, truth, strict=True))
            self._count(summary.correct_by_version, version, correct)
            if self.feedback_delay_s is not None:
                items = [
                    (p["prediction_id"], y, image)
                    for p, y, image in zip(preds, truth, body["images"], strict=True)
                ]
                task = asyncio.create_task(self._feedback(client, summary, items))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        if self.keep_records:
            sent = t0 - started
            summary.records.append((round(sent, 4), round(sent + latency, 4), version, outcome))

    async def run_async(self) -> Summary:
        summary, tasks = Summary(), set()
        sem = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(
            max_connections=self.concurrency + 8, max_keepalive_connections=self.concurrency + 8
        )
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout_s, limits=limits) as client:
            started = time.perf_counter()
            interval = 1.0 / self.rate
            n = 0
            while not self._stop.is_set():
                if self.count is not None and n >= self.count:
                    break
                due = started + n * interval
                now = time.perf_counter()
                if now - started >= self.duration_s:
                    break
                if due > now:
                    await asyncio.sleep(due - now)
                await (
                    sem.acquire()
                )  # at most `concurrency` requests in flight; the rate drops if the service lags
                summary.sent += 1
                task = asyncio.create_task(self._one(client, summary, sem, started, tasks))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            # Let requests in flight finish and their feedback go out (bounded by the timeouts).
            deadline = time.perf_counter() + 2 * self.timeout_s + (self.feedback_delay_s or 0) + 5
            while tasks and time.perf_counter() < deadline:
                await asyncio.wait(set(tasks), timeout=max(0.1, deadline - time.perf_counter()))
            for task in tasks:
                task.cancel()
            # Labels still unsent at the deadline never reached the service: reported, not silently dropped.
            owed = summary.outcomes.get("ok", 0) * self.batch if self.feedback_delay_s is not None else 0
            summary.feedback_unsent = owed - summary.feedback_sent
            summary.duration_s = time.perf_counter() - started
        return summary

    def run(self) -> Summary:
        return asyncio.run(self.run_async())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m serving.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="base URL (loopback only)")
    p.add_argument("--path-prefix", default="", help="e.g. /canary to load one environment's app directly")
    p.add_argument("--registry", default="registry")
    p.add_argument("--version", default="production", help="version or alias whose test split is sent")
    p.add_argument("--rate", type=float, default=10.0, help="requests per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (upper bound)")
    p.add_argument("--count", type=int, help="requests (upper bound)")
    p.add_argument("--batch", type=int, default=8, help="images per request")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight at most")
    p.add_argument("--feedback-delay", type=float, default=2.0, help="seconds; negative: no feedback")
    p.add_argument("--metrics-port", type=int, help="expose client metrics on 127.0.0.1:PORT")
    a = p.parse_args(argv)

    registry = Registry(a.registry)
    version = registry.require(a.version)
    images, labels = registry.test_split(version)
    metrics = ClientMetrics()
    server = None
    if a.metrics_port:
        server, _thread = start_http_server(a.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    try:
        gen = LoadGenerator(
            a.url,
            images,
            labels,
            rate=a.rate,
            duration_s=a.duration,
            count=a.count,
            batch=a.batch,
            concurrency=a.concurrency,
            feedback_delay_s=None if a.feedback_delay < 0 else a.feedback_delay,
            predict_path=f"{a.path_prefix}/predict",
            feedback_path=f"{a.path_prefix}/feedback",
            metrics=metrics,
        )
        print(f"loadgen: {a.rate:g} rps for at most {a.duration:g} s against {gen.base_url}", file=sys.stderr)
        summary = gen.run().as_dict()
    except ValueError as exc:
        print(f"serving.loadgen: {exc}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.shutdown()
    print(json.dumps({"test_split_of": version, **summary}, indent=2))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
