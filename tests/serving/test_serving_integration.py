"""The service on a real local Ray: one cluster and one Serve deployment shared by the whole session
(tests/serving/conftest.py).

Deploys the config serving.config generates (production v1, canary v2, the public router), then checks
predictions, strict input handling, feedback, exported metrics, and a canary weight change under load.
"""

import json
import threading
import time

import httpx
import numpy as np
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import start_http_server
from prometheus_client.parser import text_string_to_metric_families

from model_registry import Registry
from serving import metric_names as names
from serving.loadgen import ClientMetrics, LoadGenerator
from serving.predictor import Predictor
from serving.tokens import TokenSigner
from tests.ports import free_port
from tests.security.test_local_ports import listeners, not_loopback

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.quiet]


def test_in_process_ray_listens_on_loopback_only(service):
    """The Ray that serving.deploy.init_local_ray starts (tests, benches) binds only loopback, with one
    exception Ray does not let us close: each Serve replica's inter-deployment gRPC server, which Ray Serve
    2.60 binds to "[::]:0" in code (ray/serve/_private/replica.py, no setting). Exactly one such listener
    per replica, on the wildcard address, is allowed; any other non-loopback listener fails the test."""
    me = psutil.Process()
    found = listeners([me, *me.children(recursive=True)])
    ports = {port for _, port, _ in found}
    dashboard_port = int(service.dashboard.rsplit(":", 1)[1])
    # Serve's proxy, Ray's metrics agent and the dashboard are among them: the right processes were listed.
    assert {service.http_port, service.metrics_port, dashboard_port} <= ports, found
    public, replica_grpc = not_loopback(found)
    assert public == [], f"listeners on non-loopback addresses: {public}"
    replicas = list(service.replica_pids())
    assert len(replica_grpc) == len(replicas), (replica_grpc, replicas)


def test_predictions_match_the_offline_model(service, registry_root):
    images, _ = Registry(str(registry_root)).test_split("v1")
    for env, version in (("production", "v1"), ("canary", "v2")):
        offline_classes, offline_conf = Predictor(str(registry_root), version).predict(images[:64])
        got_classes, got_conf = [], []
        for i in range(0, 64, 16):
            r = service.client.post(f"/{env}/predict", json={"images": images[i : i + 16].tolist()})
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["environment"], body["model_version"]) == (env, version)
            got_classes += [p["class"] for p in body["predictions"]]
            got_conf += [p["probability"] for p in body["predictions"]]
        assert got_classes == offline_classes
        assert np.allclose(got_conf, offline_conf, atol=1e-5)
    # the public route, with canary_weight 0, answers from production
    r = service.client.post("/predict", json={"images": images[:3].tolist()})
    assert r.status_code == 200 and r.json()["model_version"] == "v1"
    token = r.json()["predictions"][0]["prediction_id"]
    signer = TokenSigner(service.key_file.read_bytes())
    assert signer.verify(token).model_version == "v1"


def test_health_and_version(service, registry_root):
    assert service.client.get("/production/healthz").json() == {"status": "ok", "model_version": "v1"}
    v = service.client.get("/canary/version").json()
    assert v["model_version"] == "v2"
    assert v["card"]["accuracy"] == Registry(str(registry_root)).card("v2")["metrics"]["accuracy"]
    public = service.client.get("/version").json()
    assert public["canary_weight"] == 0.0
    assert (public["stable"]["model_version"], public["canary"]["model_version"]) == ("v1", "v2")


IMAGE = [[0] * 8 for _ in range(8)]
BAD_BODIES = {
    "non-JSON": b"images please",
    "empty body": b"",
    "NaN": b'{"images": [[[NaN,0,0,0,0,0,0,0]]]}',
    "not an object": b"[]",
    "unknown key": json.dumps({"images": [IMAGE], "x": 1}).encode(),
    "empty batch": b'{"images": []}',
    "oversized batch": json.dumps({"images": [IMAGE] * 65}).encode(),
    "wrong shape": json.dumps({"images": [[[0] * 8] * 7]}).encode(),
    "flat image": json.dumps({"images": [[0] * 64]}).encode(),
    "string pixel": json.dumps({"images": [[["1"] * 8] * 8]}).encode(),
    "out of range": json.dumps({"images": [[[17] * 8] * 8]}).encode(),
    "negative": json.dumps({"images": [[[-1] * 8] * 8]}).encode(),
    "huge number": json.dumps({"images": [[[0] * 8] * 7 + [[1e308 * 10] * 8]]}).encode(),
    "too big": b'{"images": [' + b"0," * 200_000 + b"0]}",
    "deep nesting": b"[" * 50_000 + b"]" * 50_000,
}


def test_every_bad_input_is_a_4xx_and_restarts_nothing(service):
    before = service.replica_pids()
    assert len(before) == 5  # 2 environments x (ingress, classifier) + router
    for path in ("/production/predict", "/predict"):
        for kind, body in BAD_BODIES.items():
            r = service.client.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, kind, r.status_code, r.text)
            assert r.json()["error"], kind
    for path in ("/production/feedback", "/feedback"):
        for body in (b"{", b'{"prediction_id": "a.b", "label": 3}', b'{"label": 3}', b"\xff"):
            r = service.client.post(path, content=body)
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
    assert service.client.get("/production/predict").status_code == 405
    assert service.replica_pids() == before


PIXELS = st.one_of(
    st.integers(-3, 20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
NEAR_VALID = st.fixed_dictionaries(
    {
        "images": st.lists(
            st.lists(st.lists(PIXELS, min_size=7, max_size=9), min_size=7, max_size=9), max_size=3
        )
    }
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=40,
)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(NEAR_VALID, ANY_JSON, st.dictionaries(st.just("images"), ANY_JSON)))
def test_arbitrary_json_never_gets_a_5xx(service, body):
    r = service.client.post("/production/predict", content=json.dumps(body).encode())
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        assert len(r.json()["predictions"]) == len(body["images"])


def test_feedback_moves_the_accuracy_metric(service, registry_root):
    images, labels = Registry(str(registry_root)).test_split("v1")
    labels_of = {"production": "v1", "canary": "v2"}
    base = {
        env: (
            service.total(names.FEEDBACK_TOTAL, environment=env, model_version=v),
            service.total(names.FEEDBACK_CORRECT_TOTAL, environment=env, model_version=v),
        )
        for env, v in labels_of.items()
    }
    expected = {}
    for env in labels_of:
        r = service.client.post(f"/{env}/predict", json={"images": images[:20].tolist()})
        preds = r.json()["predictions"]
        # wrong labels on purpose for a few, so "correct" is a real count, not everything
        truth = [int(y) if i % 4 else (int(y) + 1) % 10 for i, y in enumerate(labels[:20])]
        correct = sum(p["class"] == y for p, y in zip(preds, truth, strict=True))
        assert 0 < correct < 20
        for i, (p, y) in enumerate(zip(preds, truth, strict=True)):
            path = "/feedback" if i % 2 else f"/{env}/feedback"  # the router and the app both count
            r = service.client.post(path, json={"prediction_id": p["prediction_id"], "label": y})
            assert r.status_code == 200 and r.json()["correct"] == (p["class"] == y)
        expected[env] = (20, correct)
    # a forged token: another key signing the same kind of payload
    forged = TokenSigner(b"not-the-service-key-0123456789").sign("production", "v1", 3)
    r = service.client.post("/feedback", json={"prediction_id": forged, "label": 3})
    assert r.status_code == 403 and "signature" in r.json()["error"]

    def moved():
        got = {
            env: (
                service.total(names.FEEDBACK_TOTAL, environment=env, model_version=v) - base[env][0],
                service.total(names.FEEDBACK_CORRECT_TOTAL, environment=env, model_version=v) - base[env][1],
            )
            for env, v in labels_of.items()
        }
        return got if got == expected else None

    service.wait_for(f"feedback counters moving by {expected}", moved)


def test_metrics_are_exported_with_their_labels(service):
    exported = [
        names.REQUESTS_TOTAL,
        names.REQUEST_LATENCY_MS_BUCKET,
        names.REQUEST_LATENCY_MS_COUNT,
        names.REQUEST_LATENCY_MS_SUM,
        names.PREDICTIONS_TOTAL,
        names.CONFIDENCE_BUCKET,
        names.CONFIDENCE_COUNT,
        names.FEEDBACK_TOTAL,
        names.FEEDBACK_CORRECT_TOTAL,
        names.INPUT_INK_TOTAL,
        names.INPUT_REFERENCE_SHARE,
    ]

    def all_there():
        samples = service.samples()
        seen = {s.name for s in samples}
        return samples if set(exported) <= seen else None

    samples = service.wait_for(f"metrics {exported}", all_there)
    ours = [s for s in samples if s.name in exported]
    for s in ours:
        assert s.labels.get(names.ENVIRONMENT) and s.labels.get(names.MODEL_VERSION), s
    requests = [s for s in ours if s.name == names.REQUESTS_TOTAL]
    assert {(s.labels["environment"], s.labels["model_version"]) for s in requests} >= {
        ("production", "v1"),
        ("canary", "v2"),
    }
    statuses = {s.labels[names.STATUS] for s in requests if s.labels[names.ROUTE] == "/predict"}
    assert {"200", "400", "413", "422"} <= statuses
    classes = {s.labels[names.PREDICTED_CLASS] for s in ours if s.name == names.PREDICTIONS_TOTAL}
    assert len(classes) >= 5 and classes <= {str(c) for c in range(10)}
    assert all(s.name in names.EXPORTED.values() or s.name.startswith("ray_chiops_") for s in ours)


def test_weight_change_moves_the_split_with_zero_failures(service, registry_root):
    from serving.deploy import deploy

    images, labels = Registry(str(registry_root)).test_split("v1")
    pids_before = service.replica_pids()
    metrics_port = free_port()
    client_metrics = ClientMetrics()
    server, _ = start_http_server(metrics_port, addr="127.0.0.1", registry=client_metrics.registry)
    gen = LoadGenerator(
        service.url,
        images,
        labels,
        rate=20,
        duration_s=40,
        batch=4,
        feedback_delay_s=0.5,
        metrics=client_metrics,
        keep_records=True,
    )
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("summary", gen.run()))
    load_started = time.perf_counter()
    runner.start()
    try:
        time.sleep(8)
        deploy_called = time.perf_counter()
        deploy(service.config(canary_weight=0.5), service.dashboard)
        service.wait_for(
            "canary_weight 0.5 at /version",
            lambda: service.client.get("/version").json()["canary_weight"] == 0.5,
        )
        seen_at = time.perf_counter()
        runner.join(timeout=120)
        assert not runner.is_alive()
        client_text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    finally:
        gen.stop()
        runner.join(timeout=60)
        server.shutdown()
    summary = result["summary"]
    start = seen_at - load_started  # when the new weight was confirmed, on the generator's clock
    assert summary.failures == 0, summary.as_dict()
    assert summary.feedback_failed == summary.feedback_unsent == 0, summary.as_dict()
    assert summary.feedback_sent == 4 * summary.outcomes["ok"]
    # Causal cut-offs on the generator's clock (it started a moment after load_started, hence the 1 s margin):
    # answered before the deploy was called, so routed at weight 0; sent after the new weight was confirmed.
    # Send times alone prove nothing before the change: on a loaded machine a request queues before routing.
    answered_by = deploy_called - load_started - 1
    before = [v for _, answered, v, _ in summary.records if answered < answered_by]
    after = [v for sent, _, v, _ in summary.records if sent > start + 1]
    assert len(before) > 50 and set(before) == {"v1"}
    assert len(after) > 50
    share = after.count("v2") / len(after)
    assert 0.4 <= share <= 0.6, share
    assert service.replica_pids() == pids_before  # reconfigured in place: nothing restarted
    families = {s.name: s for f in text_string_to_metric_families(client_text) for s in f.samples}
    ok = [
        s
        for f in text_string_to_metric_families(client_text)
        for s in f.samples
        if s.name == names.CLIENT_REQUESTS_TOTAL and s.labels[names.OUTCOME] == "ok"
    ]
    assert {s.labels[names.MODEL_VERSION] for s in ok} == {"v1", "v2"}
    assert sum(s.value for s in ok) == summary.outcomes["ok"]
    assert names.CLIENT_LATENCY_SECONDS + "_bucket" in families


def test_model_update_under_load_has_zero_failures(service, registry_root):
    """Production moves from v1 to v2 while serving: old replicas serve until the new ones are up."""
    from serving.deploy import deploy, wait_running

    images, labels = Registry(str(registry_root)).test_split("v2")
    gen = LoadGenerator(
        service.url,
        images,
        labels,
        rate=15,
        duration_s=120,
        batch=4,
        feedback_delay_s=None,
        predict_path="/production/predict",
        keep_records=True,
    )
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("summary", gen.run()))
    runner.start()
    try:
        time.sleep(5)
        deploy(service.config(canary_weight=0.5, versions={"production": "v2"}), service.dashboard)
        wait_running(["production"], timeout_s=180)
        service.wait_for(
            "production replicas all on v2",
            lambda: sum(1 for n in service.replica_pids() if n.startswith("SERVE_REPLICA::production#")) == 2,
            timeout_s=120,
        )
        time.sleep(5)
    finally:
        gen.stop()
        runner.join(timeout=60)
    summary = result["summary"]
    assert summary.failures == 0, summary.as_dict()
    versions = [v for _, _, v, _ in summary.records]
    assert versions[0] == "v1" and versions[-20:] == ["v2"] * 20, versions
    offline, _ = Predictor(str(registry_root), "v2").predict(images[:16])
    r = service.client.post("/production/predict", json={"images": images[:16].tolist()})
    assert [p["class"] for p in r.json()["predictions"]] == offline


def test_fused_layout_serves_the_same_predictions(service, registry_root):
    """The fused layout (model inside the ingress, used for throughput) answers like the two-deployment
    one."""
    from serving.config import Tuning
    from serving.deploy import deploy, wait_running

    deploy(service.config(versions={"production": "v2"}, tuning=Tuning(fused=True)), service.dashboard)
    wait_running(["production"], timeout_s=180)
    service.wait_for(
        "production without a Classifier",
        lambda: not any("production" in n and "Classifier" in n for n in service.replica_pids()),
        timeout_s=120,
    )
    images, _ = Registry(str(registry_root)).test_split("v2")
    offline, conf = Predictor(str(registry_root), "v2").predict(images[:32])
    r = service.client.post("/production/predict", json={"images": images[:32].tolist()})
    assert r.status_code == 200 and r.json()["model_version"] == "v2"
    assert [p["class"] for p in r.json()["predictions"]] == offline
    assert np.allclose([p["probability"] for p in r.json()["predictions"]], conf, atol=1e-5)
    assert service.client.post("/production/predict", content=b"[").status_code == 400
    assert service.client.get("/production/version").json()["card"]["version"] == "v2"
