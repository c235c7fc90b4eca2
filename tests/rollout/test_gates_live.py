"""The canary gates against a real Prometheus fed by real traffic through the real serving apps.

One local platform (playbooks/local_platform.yml on ports of this test) serves production v1; a load generator
sends real test-split images with delayed feedback to the public route; each candidate in turn gets half of it
as the canary, and the gates of rollout decide as the engine does: from the first window on, again every few
seconds while the verdict is inconclusive, up to a cap. A good candidate must be promoted (verdict pass); one
that errors, one that is slow and one that is inaccurate must each get a fail verdict from the gate that
measures its fault. False promotion fails the test.
"""

from __future__ import annotations

import math
import threading
import time

import httpx
import pytest
from prometheus_client import start_http_server

from chi_scripts.metrics import write_lease_metric
from model_registry import Registry
from monitoring import generate as monitoring
from rollout import gates, measure
from rollout.backends.local import LocalBackend
from rollout.prometheus import Prometheus
from serving.loadgen import ClientMetrics, LoadGenerator
from serving.metric_names import (
    FEEDBACK_CORRECT_TOTAL,
    FEEDBACK_TOTAL,
    LATENCY_BOUNDARIES_MS,
    PREDICTIONS_TOTAL,
    REQUEST_LATENCY_MS_BUCKET,
    REQUESTS_TOTAL,
)
from tests.rollout import bad_models
from tests.rollout.platform import isolated_vars, run_playbook
from tests.trained_registry import build_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.quiet]

BASE_PORT = 6460
WINDOW_S = 30
# A bad candidate fails within the first windows; the cap is for the good one, whose accuracy evidence at this
# traffic (~12 labelled images/s per side, ~2 % misclassified) needs a few minutes to rule a 2x rate out.
MAX_WINDOW_S = 300
WEIGHT = 0.5
# Each image's feedback is its own request: rate x (1 + batch) HTTP requests a second must fit this machine.
RATE = 12
BATCH = 2
CANDIDATES = {
    "v2": ("good", None),
    "v3": ("errors", "error_rate"),
    "v4": ("slow", "latency"),
    "v5": ("inaccurate", "online_accuracy"),
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    # v2 is v1 retrained with the same seed: as good as stable by construction (a differently seeded tiny
    # model can be genuinely worse, and the gate rightly rejects it).
    registry = build_registry(run_dir / "registry", versions=((0, 8), (0, 8)), aliases={"production": "v1"})
    assert bad_models.add_variant(registry, "v1", lambda m: bad_models.Erroring(m, 0.25)) == "v3"
    assert bad_models.add_variant(registry, "v1", lambda m: bad_models.Slow(m, 120)) == "v4"
    assert bad_models.add_variant(registry, "v1", bad_models.Inaccurate) == "v5"
    extra = isolated_vars(BASE_PORT, run_dir, registry)
    try:
        run_playbook("local_platform.yml", extra)
        yield extra
    finally:
        run_playbook("local_down.yml", extra, check=False)


@pytest.fixture(scope="module")
def traffic(platform):
    registry = Registry(platform["chiops_registry"])
    images, labels = registry.test_split("v1")
    metrics = ClientMetrics()
    # Prometheus scrapes the client-side metrics where the platform expects the load generator.
    server, _ = start_http_server(
        platform["local_loadgen_metrics_port"], addr="127.0.0.1", registry=metrics.registry
    )
    gen = LoadGenerator(
        f"http://127.0.0.1:{platform['local_serve_http_port']}",
        images,
        labels,
        rate=RATE,
        duration_s=1200,
        batch=BATCH,
        feedback_delay_s=1.0,
        metrics=metrics,
    )
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", gen.run()), daemon=True)
    thread.start()
    stable_history(platform)
    yield gen
    gen.stop()
    thread.join(timeout=60)
    server.shutdown()


def stable_history(platform, timeout_s: float = 120) -> None:
    """Until Prometheus holds every series of stable's the gates read, as a stable that served before would.

    A series first scraped after a window began counts from 0 (queries._growth), so a stable whose predicted
    classes appear one by one after the first candidate's window began would show a skewed class mix and
    labels from before the window.
    """
    wanted = {
        REQUESTS_TOTAL: 1,
        FEEDBACK_TOTAL: 1,
        FEEDBACK_CORRECT_TOTAL: 1,
        PREDICTIONS_TOTAL: 10,  # one series per predicted class
    }
    selector = '{environment="production",model_version="v1"}'
    deadline = time.monotonic() + timeout_s
    with Prometheus(f"http://{platform['prometheus_listen_address']}") as p:
        while True:
            have = {name: len(p.query(name + selector)) for name in wanted}
            if all(have[name] >= n for name, n in wanted.items()):
                return
            assert time.monotonic() < deadline, f"stable's series not all in Prometheus: {have}"
            time.sleep(2)


@pytest.fixture(scope="module")
def prom(platform):
    with Prometheus(f"http://{platform['prometheus_listen_address']}") as p:
        yield p


def canary(platform, version: str) -> float:
    """Start `version` as the engine does (rollout/engine.py, through the same backend): served at weight 0
    until /canary/version answers, which also opens its ingress's path to its model, and only then given a
    share of the route."""
    backend = LocalBackend(platform)
    backend.deploy("canary", version)
    backend.wait_serving("canary", version, 600, print)
    backend.set_split("v1", version, WEIGHT)
    backend.wait_split(WEIGHT, 600, print)
    return time.time()


@pytest.mark.parametrize("version", list(CANDIDATES))
def test_gate_decides_on_live_traffic(platform, traffic, prom, version):
    kind, failing_gate = CANDIDATES[version]
    started = canary(platform, version)
    time.sleep(WINDOW_S)
    # Decide as the engine does: an inconclusive verdict extends the window, up to the cap.
    while True:
        now = time.time()
        window = f"{int(now - started)}s"
        candidate = measure.measure(prom, "canary", version, window, now)
        stable = measure.measure(prom, "production", "v1", window, now)
        decision = gates.decide(candidate, stable, gates.Thresholds())
        if decision.verdict != "inconclusive" or now - started > MAX_WINDOW_S:
            break
        time.sleep(5)
    by_name = {g.name: g for g in decision.gates}
    detail = f"after {window}: {decision.verdict}\n" + "\n".join(
        f"{g.name}: {g.verdict} {g.reason}" for g in decision.gates
    )
    sent = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in traffic.metrics.registry.collect()
        for sample in family.samples
        if sample.name == "chiops_client_requests_total"
    }
    assert candidate.requests >= gates.Thresholds().min_requests, f"too little traffic ({sent}):\n{detail}"
    # The service's finer latency histogram reaches the gate, with the 500 ms boundary the alert rules read.
    assert len(candidate.latency_buckets) == len(LATENCY_BOUNDARIES_MS) + 1, sorted(candidate.latency_buckets)
    assert 0 < candidate.latency_buckets[math.inf] <= candidate.requests
    le = monitoring.LATENCY_SLO_LE
    assert prom.query(f'{REQUEST_LATENCY_MS_BUCKET}{{le="{le}"}}', now), f'no le="{le}" bucket exported'
    if failing_gate is None:
        assert decision.verdict == "pass", f"good candidate {version} not promoted:\n{detail}"
    else:
        assert decision.verdict == "fail", f"{kind} candidate {version} not rejected:\n{detail}"
        assert by_name[failing_gate].verdict == "fail", (
            f"{kind} candidate not caught by {failing_gate}:\n{detail}"
        )
    assert now - started >= WINDOW_S


def test_dashboard_and_rule_metrics_exist_in_the_live_prometheus(platform, traffic, prom):
    """Every metric a dashboard query or rule reads is a series this service really exports."""
    write_lease_metric(
        f"{platform['chiops_run_dir']}/textfile/lease.prom", ["production"], "chiops-prod", 3600
    )
    from rollout import state

    state.write(
        __import__("pathlib").Path(f"{platform['chiops_run_dir']}/textfile/rollout.prom"), "v2", "canary", 0.5
    )
    time.sleep(20)  # a scrape and one rule evaluation
    names = set(httpx.get(f"{prom.base_url}/api/v1/label/__name__/values", timeout=10).json()["data"])
    wanted = set()
    for expr in monitoring.dashboard_exprs(monitoring.dashboard()):
        wanted |= monitoring.metric_names_in(expr)
    missing = sorted(wanted - names)
    assert missing == [], f"dashboard reads metrics nobody exports: {missing}"
    alerts = httpx.get(f"{prom.base_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert any(a["labels"]["alertname"] == "ChiopsLeaseEndingSoon" for a in alerts), alerts
    # The drift rule on traffic drawn from production's own test split: measured, and far below its threshold.
    drift = prom.query(f'{monitoring.DRIFT}{{environment="production",model_version="v1"}}')
    assert len(drift) == 1 and drift[0][1] < monitoring.DRIFT_ALERT_ABOVE / 2, drift
