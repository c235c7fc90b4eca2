"""The feedback store in a live Ray Serve deployment: a replayed prediction id moves the exported feedback
counter once, and with the store gone /feedback is 503 while /predict keeps answering."""

from __future__ import annotations

import os
import shutil

import pytest

from model_registry import Registry
from serving import metric_names as names
from serving.config import Tuning
from serving.feedback_store import open_store
from serving.tokens import ensure_key_file
from tests.ports import free_port
from tests.serving.live import ROOT, Service
from tests.trained_registry import build_registry

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    import ray
    from ray import serve

    from serving.deploy import dashboard_url, deploy, init_local_ray, wait_running

    registry = build_registry(tmp_path_factory.mktemp("registry"))
    store_dir = tmp_path_factory.mktemp("store")
    url = f"sqlite:///{store_dir}/feedback.db"
    key_file = ensure_key_file(tmp_path_factory.mktemp("keys") / "token.key")
    old_pythonpath = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, old_pythonpath) if p)
    svc = Service(registry, key_file, free_port(), free_port())
    context = init_local_ray(
        num_cpus=4,
        dashboard_port=free_port(),
        _metrics_export_port=svc.metrics_port,
        logging_level="WARNING",
        log_to_driver=False,
    )
    svc.dashboard = dashboard_url(context)
    try:
        cfg = svc.config(tuning=Tuning(feedback_store=url))
        deploy(cfg, svc.dashboard)
        wait_running([a["name"] for a in cfg["applications"]], timeout_s=300)
        yield svc, registry, store_dir, url
    finally:
        svc.client.close()
        serve.shutdown()
        ray.shutdown()
        if old_pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_pythonpath


def test_replayed_feedback_is_stored_and_counted_once_and_a_lost_store_is_503(live):
    svc, registry, store_dir, url = live
    images, labels = Registry(str(registry)).test_split("v1")
    version = svc.client.get("/production/version").json()["model_version"]
    base = svc.total(names.FEEDBACK_TOTAL, environment="production", model_version=version)

    r = svc.client.post("/production/predict", json={"images": images[:1].tolist()})
    assert r.status_code == 200
    token = r.json()["predictions"][0]["prediction_id"]
    body = {"prediction_id": token, "label": int(labels[0]), "image": images[0].tolist()}
    first = svc.client.post("/production/feedback", json=body)
    replay = svc.client.post("/feedback", json=body)  # the router, another replica, same store
    assert (first.status_code, first.json()["duplicate"]) == (200, False)
    assert (replay.status_code, replay.json()["duplicate"]) == (200, True)
    assert [r.prediction_id for r in open_store(url).records()] == [token]

    def counted():
        got = svc.total(names.FEEDBACK_TOTAL, environment="production", model_version=version) - base
        return got if got == 1 else None

    svc.wait_for("the feedback counter moving by exactly 1", counted)

    shutil.rmtree(store_dir)
    r = svc.client.post("/production/predict", json={"images": images[1:2].tolist()})
    assert r.status_code == 200
    token = r.json()["predictions"][0]["prediction_id"]
    lost = svc.client.post(
        "/production/feedback",
        json={"prediction_id": token, "label": int(labels[1]), "image": images[1].tolist()},
    )
    assert lost.status_code == 503 and "retry" in lost.json()["error"]
    assert svc.client.post("/predict", json={"images": images[:4].tolist()}).status_code == 200
    # the exported counter did not move for the feedback that was not stored
    assert svc.total(names.FEEDBACK_TOTAL, environment="production", model_version=version) - base == 1
