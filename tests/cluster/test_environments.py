"""environments/<env>/ as the GitOps backend renders and commits it: valid, and serving what the routes
promise."""

import copy

import pytest
from ray.serve.schema import ServeDeploySchema

from serving.ingress import app as ingress_app
from serving.tokens import KEY_ENV, KEY_FILE_ENV
from tests.cluster.conftest import RENDERED
from tests.cluster.rendering import ENVIRONMENTS, load_documents
from tests.cluster.routing import route, serve_app, serve_config_of
from tests.cluster.validation import InvalidManifest, validate

COMMON = ["httproute.yaml", "namespace.yaml", "networkpolicy.yaml", "rayservice.yaml"]
EXPECTED_FILES = {
    "staging": COMMON,
    "canary": sorted([*COMMON, "referencegrant.yaml"]),
    "production": sorted([*COMMON, "public-httproute.yaml"]),
}
VERSIONS = {env: version for env, version, _ in RENDERED}


def route_paths(routes) -> set[str]:
    """The paths of a FastAPI app's routes (Serve's ingress wraps them in an included router)."""
    out = set()
    for r in routes:
        if hasattr(r, "original_router"):
            out |= route_paths(r.original_router.routes)
        elif getattr(r, "path", None):
            out.add(r.path)
    return out


# What the environment ingress answers (its FastAPI routes), read from the app itself.
APP_PATHS = route_paths(ingress_app.routes)


def documents(environments_dir, env):
    return [doc for path in sorted((environments_dir / env).iterdir()) for doc in load_documents(path)]


def of_kind(environments_dir, kind):
    return [d for env in ENVIRONMENTS for d in documents(environments_dir, env) if d["kind"] == kind]


def rayservice(environments_dir, env):
    return load_documents(environments_dir / env / "rayservice.yaml")[0]


def pod_specs(service):
    cluster = service["spec"]["rayClusterConfig"]
    return [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_renders_exactly_its_files(environments_dir, env):
    assert sorted(p.name for p in (environments_dir / env).iterdir()) == EXPECTED_FILES[env]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_manifest_validates(environments_dir, env):
    docs = documents(environments_dir, env)
    assert {d["kind"] for d in docs} >= {"Namespace", "RayService", "HTTPRoute", "NetworkPolicy"}
    for doc in docs:
        validate(doc)
        assert doc["metadata"].get("namespace", doc["metadata"]["name"]) == f"chiops-{env}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_serve_config_binds_every_interface_with_one_app_at_the_root(environments_dir, env, render_backend):
    embedded = serve_config_of(rayservice(environments_dir, env))
    # the role embeds what serving.config generated for this environment, verbatim
    assert embedded == render_backend.serve_config(env, VERSIONS[env])
    parsed = ServeDeploySchema.model_validate(embedded)
    assert parsed.http_options.host == "0.0.0.0"
    assert [(a.name, a.route_prefix, a.args["model_version"]) for a in parsed.applications] == [
        (env, "/", VERSIONS[env])
    ]


def routes_and_configs(environments_dir):
    routes = of_kind(environments_dir, "HTTPRoute")
    configs = {
        (f"chiops-{env}", f"chiops-{env}-serve-svc"): serve_config_of(rayservice(environments_dir, env))
        for env in ENVIRONMENTS
    }
    return routes, configs


@pytest.mark.parametrize(
    ("public_path", "expected"),
    [
        # the public entry point: production and the canary's share, path unchanged
        ("/predict", {"production": "/predict", "canary": "/predict"}),
        ("/feedback", {"production": "/feedback", "canary": "/feedback"}),
        ("/version", {"production": "/version", "canary": "/version"}),
        # each environment on its own prefix, stripped before Serve
        ("/staging/predict", {"staging": "/predict"}),
        ("/staging/version", {"staging": "/version"}),
        ("/canary/version", {"canary": "/version"}),
        ("/production/feedback", {"production": "/feedback"}),
    ],
)
def test_every_route_reaches_an_app_route(environments_dir, public_path, expected):
    routes, configs = routes_and_configs(environments_dir)
    hops = route(routes, public_path)
    assert hops, f"no HTTPRoute matches {public_path}"
    reached = {}
    for hop in hops:
        config = configs[(hop.namespace, hop.service)]
        assert hop.port == config["http_options"]["port"]
        app = serve_app(config, hop.path)
        assert app is not None, f"{public_path} → {hop.service}{hop.path}: no Serve app there (404)"
        name, app_path = app
        assert app_path in APP_PATHS, f"{public_path} → {name}{app_path}: not an endpoint of the app"
        reached[name] = app_path
    assert reached == expected


def test_the_canary_share_reaches_the_canary_app(environments_dir):
    routes, configs = routes_and_configs(environments_dir)
    hops = route(routes, "/predict")
    weights = {configs[(h.namespace, h.service)]["applications"][0]["name"]: h.weight for h in hops}
    assert weights == {"production": 90, "canary": 10}
    canary_config = configs[("chiops-canary", "chiops-canary-serve-svc")]
    assert canary_config["applications"][0]["args"]["model_version"] == "v2"
    (grant,) = load_documents(environments_dir / "canary" / "referencegrant.yaml")
    (public,) = load_documents(environments_dir / "production" / "public-httproute.yaml")
    assert grant["spec"]["from"][0]["namespace"] == public["metadata"]["namespace"]
    assert grant["spec"]["to"][0]["name"] == "chiops-canary-serve-svc"


def test_unknown_public_paths_reach_no_other_environment(environments_dir):
    routes, _ = routes_and_configs(environments_dir)
    # "/stagingx" is not under "/staging": the public route takes it, never staging
    assert {h.service for h in route(routes, "/stagingx/predict")} == {
        "chiops-production-serve-svc",
        "chiops-canary-serve-svc",
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_token_key_comes_from_a_secret_mounted_read_only(environments_dir, env):
    service = rayservice(environments_dir, env)
    for template in pod_specs(service):
        spec = template["spec"]
        (volume,) = [v for v in spec["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "chiops-token-key"
        assert volume["secret"]["defaultMode"] == 0o440
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        env_vars = {e["name"]: e.get("value") for e in container["env"]}
        (item,) = volume["secret"]["items"]
        assert env_vars[KEY_FILE_ENV] == f"{mount['mountPath']}/{item['path']}"
        # the ray user (fsGroup) can read the 0440 file
        assert spec["securityContext"]["fsGroup"] == 100
    # the key itself is never in git: no Secret is rendered, and no variable carries the key's value
    assert not [d for d in documents(environments_dir, env) if d["kind"] == "Secret"]
    for template in pod_specs(service):
        (container,) = template["spec"]["containers"]
        assert KEY_ENV not in {e["name"] for e in container["env"]}


def allowed_sources(policy, port):
    """What a NetworkPolicy's ingress rules let reach `port`: 'same-environment' or the namespace names."""
    sources = set()
    for rule in policy["spec"]["ingress"]:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                sources.add(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
            else:
                assert set(peer) == {"podSelector"}
                assert peer["podSelector"] == policy["spec"]["podSelector"]
                sources.add("same-environment")
    return sources


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_ray_control_ports_answer_only_the_rayservice(environments_dir, env):
    (policy,) = load_documents(environments_dir / env / "networkpolicy.yaml")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    service = rayservice(environments_dir, env)
    for template in pod_specs(service):
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert allowed_sources(policy, 6379) == {"same-environment"}  # GCS
    assert allowed_sources(policy, 10001) == {"same-environment"}  # Ray client
    assert allowed_sources(policy, 20000) == {"same-environment"}  # worker ports
    # dashboard (job submission) and its agent: also the KubeRay operator, which reads Serve status there
    assert allowed_sources(policy, 8265) == {"same-environment", "kuberay-system"}
    assert allowed_sources(policy, 52365) == {"same-environment", "kuberay-system"}
    assert allowed_sources(policy, 8000) == {"same-environment", "chiops-gateway"}
    assert allowed_sources(policy, 8080) == {"same-environment", "monitoring"}
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert cluster["authOptions"] == {"mode": "token"}
    assert not [
        d
        for d in documents(environments_dir, env)
        if d["kind"] == "Service" and d["spec"].get("type") in ("NodePort", "LoadBalancer")
    ]


def test_gpu_inventories_request_amd_gpus_and_the_model_reserves_one(environments_dir):
    service = rayservice(environments_dir, "production")
    assert service["metadata"]["labels"]["chiops.io/model-version"] == "v1"
    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["nodeSelector"] == {"chiops.io/gpu-amd": "true"}
    container = worker["containers"][0]
    assert container["resources"]["requests"]["amd.com/gpu"] == 1
    assert container["resources"]["limits"]["amd.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CHIOPS_MODEL_VERSION"] == "v1"
    assert env["CHIOPS_MODEL_URI"].endswith("/versions/v1")
    # Ray hides GPUs from actors that reserve none: the model replica reserves a share
    deployments = {d["name"]: d for d in serve_config_of(service)["applications"][0]["deployments"]}
    assert deployments["Classifier"]["ray_actor_options"]["num_gpus"] > 0
    assert "num_gpus" not in deployments["EnvironmentIngress"]["ray_actor_options"]


# Negative tests: the validation must catch what a cluster would refuse (or silently drop).
def broken(doc, mutate):
    doc = copy.deepcopy(doc)
    mutate(doc)
    return doc


@pytest.mark.parametrize(
    ("what", "mutate"),
    [
        (
            "worker group without a name",
            lambda d: d["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].pop("groupName"),
        ),
        (
            "misspelt field, pruned silently",
            lambda d: d["spec"].update(serveConfigv2=d["spec"].pop("serveConfigV2")),
        ),
        (
            "rayStartParams value not a string",
            lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].update(
                {"num-cpus": 0}
            ),
        ),
        (
            "container resources misspelt in the pod template",
            lambda d: d["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][
                0
            ].update(resource={"limits": {"cpu": "1"}}),
        ),
    ],
)
def test_broken_rayservice_is_rejected(environments_dir, what, mutate):
    with pytest.raises(InvalidManifest):
        validate(broken(rayservice(environments_dir, "production"), mutate))


def test_broken_route_policy_and_namespace_are_rejected(environments_dir):
    (public,) = load_documents(environments_dir / "production" / "public-httproute.yaml")
    with pytest.raises(InvalidManifest, match="weight"):
        validate(broken(public, lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(weight=-5)))
    with pytest.raises(InvalidManifest):
        validate(
            broken(public, lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(value="predict"))
        )
    (policy,) = load_documents(environments_dir / "staging" / "networkpolicy.yaml")
    with pytest.raises(InvalidManifest):
        validate(broken(policy, lambda d: d["spec"]["ingress"][1]["ports"][0].update(potr=8000)))
    (namespace,) = load_documents(environments_dir / "staging" / "namespace.yaml")
    with pytest.raises(InvalidManifest):
        validate(broken(namespace, lambda d: d["metadata"].update(lables={"x": "y"})))


def test_broken_serve_config_is_rejected(environments_dir):
    bad = serve_config_of(rayservice(environments_dir, "staging"))
    bad["applications"][0]["deployments"][0]["num_replicas"] = "many"
    with pytest.raises(ValueError):
        ServeDeploySchema.model_validate(bad)
