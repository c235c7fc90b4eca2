"""The layouts serving.config can generate beyond the default, and the router's canary fallback, on live Ray.

Runs after test_serving_integration.py on the same session service (it redeploys it): each layout's config is
parsed by Ray Serve's own schema, deployed, and answers like the offline model; a crashing canary's failures
are counted as canary 5xx while every user request is answered by stable.
"""

import numpy as np
import pytest
from ray.serve.schema import ServeDeploySchema

from model_registry import Registry
from serving import metric_names as names
from serving.config import LAYOUTS, Tuning
from serving.deploy import deploy, wait_running
from serving.predictor import Predictor
from tests.rollout import bad_models

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.quiet]


def _key(name: str) -> tuple[str, str]:
    app, _, rest = name.removeprefix("SERVE_REPLICA::").partition("#")
    return app, rest.split("#")[0]


def _deploy(service, renewed=(), **options):
    """Deploy, then wait until the replicas are one per (app, deployment), those of ``renewed`` (app names)
    replaced by new ones: the old replicas gone, so what answers next is the new config."""
    before = set(service.replica_pids())
    cfg = service.config(**options)
    ServeDeploySchema.model_validate(cfg)
    deploy(cfg, service.dashboard)
    wanted = {("public", "PublicRouter")} | {(a["name"], "EnvironmentIngress") for a in cfg["applications"]}
    wanted.discard(("public", "EnvironmentIngress"))

    def settled():
        names_now = set(service.replica_pids())
        keys = [_key(n) for n in names_now]
        fresh = {_key(n)[0] for n in names_now - before}
        return sorted(keys) == sorted(wanted) and set(renewed) <= fresh

    service.wait_for(f"replicas {sorted(wanted)}, new in {sorted(renewed)}", settled, timeout_s=240)
    wait_running([a["name"] for a in cfg["applications"]], timeout_s=240)
    return cfg


def _same_as_offline(service, registry_root, path, version):
    images, _ = Registry(str(registry_root)).test_split(version)
    offline, conf = Predictor(str(registry_root), version).predict(images[:32])
    got, probs = [], []
    for i in range(0, 32, 8):
        r = service.client.post(path, json={"images": images[i : i + 8].tolist()})
        assert r.status_code == 200 and r.json()["model_version"] == version, r.text
        got += [p["class"] for p in r.json()["predictions"]]
        probs += [p["probability"] for p in r.json()["predictions"]]
    assert got == offline
    assert np.allclose(probs, conf, atol=1e-5)


@pytest.mark.parametrize("layout", ["fused", "inline"])
def test_layout_deploys_and_answers_like_the_offline_model(service, registry_root, layout):
    inline = LAYOUTS[layout].get("inline_stable", False)
    # from split, fused replaces the environment apps (no Classifier); from fused, inline replaces the router
    renewed = ("public",) if inline else ("canary", "production")
    cfg = _deploy(service, renewed=renewed, tuning=Tuning.for_layout(layout))
    apps = {a["name"]: a for a in cfg["applications"]}
    assert [d["name"] for d in apps["production"]["deployments"]] == ["EnvironmentIngress"]
    assert ("stable_version" in apps["public"]["args"]) == inline
    _same_as_offline(service, registry_root, "/production/predict", "v1")
    _same_as_offline(service, registry_root, "/canary/predict", "v2")
    base = service.total(names.REQUESTS_TOTAL, application="public", environment="production", status="200")
    _same_as_offline(service, registry_root, "/predict", "v1")  # the public route, canary weight 0
    assert service.client.get("/version").json()["stable"]["model_version"] == "v1"
    if inline:
        # answered by the router's own copy of production's model, and counted as production's
        service.wait_for(
            "public-route predictions counted as production's by the router",
            lambda: (
                service.total(
                    names.REQUESTS_TOTAL, application="public", environment="production", status="200"
                )
                >= base + 4
            ),
        )


def _add_crashing_version(registry_root) -> str:
    """A registered version that loads and passes the start check but raises on any real digit: a canary that
    crashes on live traffic. Registered once per module, through the real writer."""
    registry = Registry(str(registry_root))
    for version in registry.index()["versions"]:
        if registry.card(version)["config"].get("name") == "v2-Crashing":
            return version
    return bad_models.add_variant(registry_root, "v2", bad_models.Crashing)


def _canary_5xx(service, version: str, **labels) -> float:
    return sum(
        service.total(
            names.REQUESTS_TOTAL,
            environment="canary",
            model_version=version,
            route="/predict",
            status=s,
            **labels,
        )
        for s in ("503", "500")
    )


def test_crashing_canary_is_counted_as_canary_errors_and_costs_users_nothing(service, registry_root):
    crash = _add_crashing_version(registry_root)
    images, _ = Registry(str(registry_root)).test_split("v1")
    tuning = Tuning.for_layout("inline")

    def burst(n: int) -> None:
        for i in range(n):
            r = service.client.post("/predict", json={"images": images[i * 4 : i * 4 + 4].tolist()})
            assert r.status_code == 200 and r.json()["model_version"] == "v1", r.text  # stable answered

    # 1. The canary answers 5xx: it counts its own error; the router retries on stable. The new canary
    #    replaces the canary app; the router takes it (and the weight) in place, through its user_config.
    _deploy(service, renewed=("canary",), versions={"canary": crash}, canary_weight=1.0, tuning=tuning)
    assert service.client.get("/canary/version").json()["model_version"] == crash
    service.wait_for(
        "the router sending everything to the crashing canary",
        lambda: (lambda v: v["canary_weight"] == 1.0 and (v["canary"] or {}).get("model_version") == crash)(
            service.client.get("/version").json()
        ),
    )
    base = _canary_5xx(service, crash)
    burst(10)
    service.wait_for("10 canary 5xx", lambda: _canary_5xx(service, crash) - base == 10)

    # 2. The canary call itself fails (here: it never answers within the router's timeout): nobody but the
    #    router sees it, and the router counts it as a canary 503 under the canary's version.
    tuning = Tuning.for_layout("inline", canary_timeout_s=0.0001)
    cfg = _deploy(service, renewed=("public",), versions={"canary": crash}, canary_weight=1.0, tuning=tuning)
    router = {a["name"]: a for a in cfg["applications"]}["public"]["deployments"][0]
    assert router["user_config"]["canary_version"] == crash
    base = _canary_5xx(service, crash, application="public")
    burst(10)
    service.wait_for(
        "10 canary 503 counted by the router",
        lambda: _canary_5xx(service, crash, application="public") - base == 10,
    )
