"""deploy/platform/: valid manifests, pinned versions, waves in order, and labels that agree across parts."""

import re

import pytest
import yaml

from tests.cluster.rendering import ROOT, load_documents
from tests.cluster.validation import InvalidManifest, validate

PLATFORM = ROOT / "deploy" / "platform"


def platform_documents():
    return [(path.name, doc) for path in sorted(PLATFORM.glob("*.yaml")) for doc in load_documents(path)]


def wave(doc):
    return int(doc["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def by_kind(kind):
    return [doc for _, doc in platform_documents() if doc["kind"] == kind]


def role_defaults(role):
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


@pytest.mark.parametrize(("name", "doc"), platform_documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_platform_manifest_validates(name, doc):
    validate(doc)
    if doc["kind"] == "DaemonSet":
        # the same PodTemplate check the RayService templates get, for symmetry with a real API server
        assert doc["spec"]["template"]["spec"]["containers"], name


def test_the_platform_has_what_the_issue_asks_for():
    charts = {
        app["spec"]["source"]["chart"]: app["spec"]["source"]["targetRevision"]
        for app in by_kind("Application")
    }
    assert charts == {"kuberay-operator": "1.7.0", "kube-prometheus-stack": "88.4.0", "traefik": "40.0.0"}
    assert {d["metadata"]["name"] for d in by_kind("DaemonSet")} == {
        "amdgpu-device-plugin",
        "amdgpu-node-labeller",
    }
    assert [g["metadata"]["name"] for g in by_kind("Gateway")] == ["chiops-public"]
    assert {p["metadata"]["name"] for p in by_kind("PodMonitor")} == {"ray-head", "ray-workers"}
    assert [r["metadata"]["name"] for r in by_kind("PrometheusRule")] == ["chiops"]


def test_versions_are_pinned():
    for _, doc in platform_documents():
        if doc["kind"] == "Application":
            assert re.fullmatch(r"\d+\.\d+\.\d+", doc["spec"]["source"]["targetRevision"]), doc["metadata"][
                "name"
            ]
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            assert (
                re.search(r":[\w-]*\d+\.\d+[\w.-]*$", container["image"])
                and "latest" not in container["image"]
            )


def test_sync_waves_put_controllers_before_what_needs_them():
    namespaces = max(wave(d) for d in by_kind("Namespace"))
    charts = [wave(d) for d in by_kind("Application")]
    agents = [wave(d) for d in by_kind("DaemonSet")]
    needing_crds = by_kind("Gateway") + by_kind("PodMonitor") + by_kind("PrometheusRule")
    dependents = [wave(d) for d in needing_crds]
    assert namespaces < min(charts) and max(charts) < min(agents) and max(agents) < min(dependents)
    for doc in needing_crds:
        # their CRDs or classes arrive with an earlier wave of the same sync
        assert (
            "SkipDryRunOnMissingResource=true"
            in doc["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
        )


def test_gpu_and_gateway_node_labels_agree_across_roles_and_manifests():
    kubespray = role_defaults("kubespray")
    gpu_label = kubespray["kubespray_gpu_node_labels"]
    assert role_defaults("environment_manifests")["environment_manifests_gpu_node_label"] == gpu_label
    for daemonset in by_kind("DaemonSet"):
        assert daemonset["spec"]["template"]["spec"]["nodeSelector"] == gpu_label
    (traefik,) = [a for a in by_kind("Application") if a["metadata"]["name"] == "traefik"]
    assert (
        traefik["spec"]["source"]["helm"]["valuesObject"]["nodeSelector"]
        == kubespray["kubespray_public_node_labels"]
    )


def test_gateway_route_and_monitors_fit_the_rendered_environments(environments_dir):
    (gateway,) = by_kind("Gateway")
    (route,) = load_documents(environments_dir / "production" / "public-httproute.yaml")
    (namespace,) = load_documents(environments_dir / "production" / "namespace.yaml")
    parent = route["spec"]["parentRefs"][0]
    assert (parent["name"], parent["namespace"]) == (
        gateway["metadata"]["name"],
        gateway["metadata"]["namespace"],
    )
    selector = gateway["spec"]["listeners"][0]["allowedRoutes"]["namespaces"]["selector"]["matchLabels"]
    assert selector.items() <= namespace["metadata"]["labels"].items()
    # Traefik's web entry point (the port the Gateway listener must use) is the listener's port.
    (traefik,) = [a for a in by_kind("Application") if a["metadata"]["name"] == "traefik"]
    assert (
        traefik["spec"]["source"]["helm"]["valuesObject"]["ports"]["web"]["port"]
        == gateway["spec"]["listeners"][0]["port"]
    )

    service = load_documents(environments_dir / "production" / "rayservice.yaml")[0]
    cluster = service["spec"]["rayClusterConfig"]
    head_ports = {p["name"] for p in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
    worker_ports = {
        p["name"] for p in cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["ports"]
    }
    monitors = {m["metadata"]["name"]: m for m in by_kind("PodMonitor")}
    assert {e["port"] for e in monitors["ray-head"]["spec"]["podMetricsEndpoints"]} == {
        "metrics",
        "as-metrics",
        "dash-metrics",
    }
    assert {e["port"] for e in monitors["ray-head"]["spec"]["podMetricsEndpoints"]} <= head_ports
    assert {e["port"] for e in monitors["ray-workers"]["spec"]["podMetricsEndpoints"]} <= worker_ports


def test_a_broken_platform_manifest_is_rejected():
    (monitor, *_) = by_kind("PodMonitor")
    monitor = yaml.safe_load(yaml.safe_dump(monitor))
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "fifteen seconds"
    with pytest.raises(InvalidManifest, match="interval"):
        validate(monitor)
    (rule,) = by_kind("PrometheusRule")
    rule = yaml.safe_load(yaml.safe_dump(rule))
    alert = next(r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r)
    alert["for"] = "five minutes"
    with pytest.raises(InvalidManifest, match=r"rules/\d+/for"):
        validate(rule)
    alert["for"], alert["severity"] = "5m", "page"
    with pytest.raises(InvalidManifest, match="severity"):
        validate(rule)
    (daemonset, *_) = by_kind("DaemonSet")
    daemonset = yaml.safe_load(yaml.safe_dump(daemonset))
    daemonset["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(InvalidManifest, match="volumeMount"):
        validate(daemonset)
