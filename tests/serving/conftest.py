"""Fixtures of the serving tests: a small real registry and one local Ray + Serve per session."""

import os

import pytest

from serving.tokens import ensure_key_file
from tests.ports import free_port
from tests.serving.live import ROOT, Service
from tests.trained_registry import build_registry


@pytest.fixture(scope="session")
def registry_root(tmp_path_factory):
    return build_registry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="session")
def service(registry_root, tmp_path_factory):
    import ray
    from ray import serve

    from serving.deploy import dashboard_url, deploy, init_local_ray, wait_running

    key_file = ensure_key_file(tmp_path_factory.mktemp("keys") / "token.key")
    # Ray workers must import `serving`; they inherit the environment of the process that starts Ray.
    old_pythonpath = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, old_pythonpath) if p)
    svc = Service(registry_root, key_file, free_port(), free_port())
    context = init_local_ray(
        num_cpus=4,
        dashboard_port=free_port(),
        _metrics_export_port=svc.metrics_port,
        logging_level="WARNING",
        log_to_driver=False,
    )
    svc.dashboard = dashboard_url(context)
    try:
        cfg = svc.config()
        deploy(cfg, svc.dashboard)
        wait_running([a["name"] for a in cfg["applications"]], timeout_s=300)
        yield svc
    finally:
        svc.client.close()
        serve.shutdown()
        ray.shutdown()
        if old_pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_pythonpath
