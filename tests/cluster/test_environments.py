"""deploy/environments/<env>/ as rendered by roles/environment_manifests: valid, and saying what we mean."""

import copy

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from tests.cluster.rendering import ENVIRONMENTS, load_documents
from tests.cluster.validation import InvalidManifest, validate

EXPECTED_FILES = {
    "staging": ["namespace.yaml", "rayservice.yaml"],
    "canary": ["namespace.yaml", "rayservice.yaml", "referencegrant.yaml"],
    "production": ["httproute.yaml", "namespace.yaml", "rayservice.yaml"],
}


def documents(environments_dir, env):
    return [doc for path in sorted((environments_dir / env).iterdir()) for doc in load_documents(path)]


def rayservice(environments_dir, env):
    return load_documents(environments_dir / env / "rayservice.yaml")[0]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_each_environment_renders_exactly_its_files(environments_dir, env):
    assert sorted(p.name for p in (environments_dir / env).iterdir()) == EXPECTED_FILES[env]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_manifest_validates(environments_dir, env):
    docs = documents(environments_dir, env)
    assert {d["kind"] for d in docs} >= {"Namespace", "RayService"}
    for doc in docs:
        validate(doc)
        assert doc["metadata"].get("namespace", doc["metadata"]["name"]) == f"chiops-{env}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_serve_config_v2_is_a_valid_serve_deploy_config(environments_dir, env, serve_config_fixture):
    embedded = yaml.safe_load(rayservice(environments_dir, env)["spec"]["serveConfigV2"])
    assert embedded == serve_config_fixture
    parsed = ServeDeploySchema.model_validate(embedded)
    assert [app.name for app in parsed.applications] == ["staging", "canary", "production", "public"]


def test_model_version_and_gpus_reach_the_pods(environments_dir):
    service = rayservice(environments_dir, "production")
    assert service["metadata"]["labels"]["chiops.io/model-version"] == "v1"
    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["nodeSelector"] == {"chiops.io/gpu-amd": "true"}
    container = worker["containers"][0]
    assert container["resources"]["requests"]["amd.com/gpu"] == 1
    assert container["resources"]["limits"]["amd.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CHIOPS_MODEL_VERSION"] == "v1"
    assert env["CHIOPS_MODEL_URI"] == "s3://chiops-registry/versions/v1"


def test_public_route_splits_by_the_canary_weight(environments_dir):
    (route,) = load_documents(environments_dir / "production" / "httproute.yaml")
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["namespace"], b["port"], b["weight"]) for b in backends] == [
        ("chiops-production-serve-svc", "chiops-production", 8000, 90),
        ("chiops-canary-serve-svc", "chiops-canary", 8000, 10),
    ]
    (grant,) = load_documents(environments_dir / "canary" / "referencegrant.yaml")
    assert grant["spec"]["from"][0]["namespace"] == route["metadata"]["namespace"]
    assert grant["spec"]["to"][0]["name"] == backends[1]["name"]


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


def test_broken_route_and_namespace_are_rejected(environments_dir):
    (route,) = load_documents(environments_dir / "production" / "httproute.yaml")
    with pytest.raises(InvalidManifest, match="weight"):
        validate(broken(route, lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(weight=-5)))
    with pytest.raises(InvalidManifest):
        validate(broken(route, lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(value="predict")))
    (namespace,) = load_documents(environments_dir / "staging" / "namespace.yaml")
    with pytest.raises(InvalidManifest):
        validate(broken(namespace, lambda d: d["metadata"].update(lables={"x": "y"})))


def test_broken_serve_config_is_rejected(serve_config_fixture):
    bad = copy.deepcopy(serve_config_fixture)
    bad["applications"][0]["deployments"][0]["num_replicas"] = "many"
    with pytest.raises(ValueError):
        ServeDeploySchema.model_validate(bad)
