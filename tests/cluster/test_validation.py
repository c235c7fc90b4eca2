"""The validator itself: pinned upstream CRDs byte for byte, their full schemas and their CEL rules."""

import copy

import pytest

from tests.cluster import cel, upstream
from tests.cluster.rendering import load_documents
from tests.cluster.validation import InvalidManifest, apply_defaults, validate


def test_every_pinned_upstream_file_matches_its_sha256():
    pinned = upstream.pins()
    assert {(p.project, p.version) for p in pinned} == {
        ("argo-cd", "v3.4.6"),
        ("kuberay", "v1.7.0"),
        ("gateway-api", "v1.5.1"),
    }
    for pin in pinned:
        upstream.read_pinned(pin)  # raises on a missing copy or another digest


def test_a_copy_that_differs_from_its_pin_is_refused(tmp_path, monkeypatch):
    pin = upstream.pins()[1]
    copy_dir = tmp_path / f"{pin.project}-{pin.version}"
    copy_dir.mkdir()
    (copy_dir / pin.local.name).write_bytes(pin.local.read_bytes() + b"\n# edited\n")
    monkeypatch.setenv("CHIOPS_UPSTREAM_DIR", str(tmp_path))
    with pytest.raises(upstream.UpstreamError, match="differs from the pinned"):
        upstream.read_pinned(pin)


def test_argocd_crds_are_the_ones_its_pinned_install_manifest_applies():
    """The CRDs validation uses for argoproj.io come out of install.yaml: upstream's CRD files, byte for
    byte."""
    argocd = upstream.pins()[0]
    install_documents = upstream.read_pinned(argocd).decode().split("\n---\n")
    for name in ("application", "applicationset", "appproject"):
        text = (argocd.local.parent / f"{name}-crd.yaml").read_text()
        assert any(text.strip() in document for document in install_documents), name
        assert f"{name}s.argoproj.io" in upstream.crds()
    served = upstream.served()
    for kind in ("Application", "ApplicationSet", "AppProject"):
        assert ("argoproj.io/v1alpha1", kind) in served
    for kind in ("RayService", "RayCluster", "RayJob"):
        assert ("ray.io/v1", kind) in served
    for kind in ("Gateway", "GatewayClass", "HTTPRoute", "GRPCRoute", "ReferenceGrant"):
        assert ("gateway.networking.k8s.io/v1", kind) in served


def _rules(node):
    if isinstance(node, dict):
        for spec in node.get("x-kubernetes-validations", []):
            yield spec["rule"]
        for value in node.values():
            yield from _rules(value)
    elif isinstance(node, list):
        for value in node:
            yield from _rules(value)


def test_every_cel_rule_of_the_pinned_crds_compiles_with_implemented_functions():
    rules = {rule for crd in upstream.crds().values() for rule in _rules(crd)}
    assert len(rules) > 50  # distinct rules: Gateway API and KubeRay carry CEL rules
    for rule in rules:
        cel.compile_rule(rule)  # raises UnsupportedCEL on a function cel.py does not implement


def test_an_unimplemented_cel_function_fails_loudly():
    with pytest.raises(cel.UnsupportedCEL, match=r"lowerAscii"):
        cel.compile_rule("self.name.lowerAscii() == self.name")
    schema = {"type": "object", "properties": {"x": {"type": "string"}},
              "x-kubernetes-validations": [{"rule": "isURL(self.x)",
                                            "message": "x must be a URL"}]}  # fmt: skip
    from tests.cluster.validation import cel_violations

    with pytest.raises(cel.UnsupportedCEL, match="isURL"):
        cel_violations({"x": "http://a"}, schema)


@pytest.mark.parametrize(
    ("text", "separator", "limit", "expected"),
    [
        ("a/b/c", "/", None, ["a", "b", "c"]),
        ("a/b/c", "/", 2, ["a", "b/c"]),
        ("a/b/c", "/", 0, []),
        ("", "/", None, [""]),
        ("abc", "", None, ["a", "b", "c"]),
    ],
)
def test_kubernetes_split_has_go_semantics(text, separator, limit, expected):
    args = (text, separator) if limit is None else (text, separator, limit)
    assert list(cel._split(*args)) == expected


@pytest.fixture(scope="module")
def route(environments_dir):
    (doc,) = load_documents(environments_dir / "production" / "httproute.yaml")
    return doc


def broken(doc, mutate):
    doc = copy.deepcopy(doc)
    mutate(doc)
    return doc


def test_a_schema_rule_violation_fails_with_the_schema_message(route):
    with pytest.raises(InvalidManifest, match=r"backendRefs/0/weight: -5 is less than the minimum of 0"):
        validate(broken(route, lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(weight=-5)))


def test_an_unknown_field_is_rejected(route):
    with pytest.raises(InvalidManifest, match=r"'wieght' was unexpected"):
        validate(broken(route, lambda d: d["spec"]["rules"][0]["backendRefs"][0].update(wieght=5)))


def test_a_cel_rule_violation_fails_with_the_rule_message(route):
    """Valid for the OpenAPI schema (port is optional there); only the CRD's CEL rule forbids it."""
    with pytest.raises(InvalidManifest, match=r"backendRefs\[0\]: Must have port for Service reference"):
        validate(broken(route, lambda d: d["spec"]["rules"][0]["backendRefs"][0].pop("port")))
    with pytest.raises(InvalidManifest, match=r"value must be an absolute path"):
        validate(broken(route, lambda d: d["spec"]["rules"][0]["matches"][0]["path"].update(value="predict")))
    twice = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x", "value": "1"}]}}
    with pytest.raises(InvalidManifest, match=r"RequestHeaderModifier filter cannot be repeated"):
        validate(broken(route, lambda d: d["spec"]["rules"][0].update(filters=[twice, twice])))


def test_defaults_are_applied_before_the_cel_rules(route):
    """A rule without matches gets the CRD's default match (PathPrefix /), as the API server stores it."""
    bare = broken(route, lambda d: d["spec"]["rules"][0].pop("matches"))
    stored = copy.deepcopy(bare)
    schema = upstream.served()[("gateway.networking.k8s.io/v1", "HTTPRoute")].schema
    apply_defaults(stored, schema)
    assert stored["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    validate(bare)


def test_transition_rules_bind_old_self_only_on_update(environments_dir):
    (service,) = load_documents(environments_dir / "production" / "rayservice.yaml")
    managed = broken(
        service, lambda d: d["spec"]["rayClusterConfig"].update(managedBy="ray.io/kuberay-operator")
    )
    moved = broken(
        service, lambda d: d["spec"]["rayClusterConfig"].update(managedBy="kueue.x-k8s.io/multikueue")
    )
    validate(moved)  # on create there is no oldSelf: the immutability rule does not apply
    validate(moved, old=moved)
    with pytest.raises(
        InvalidManifest, match=r"rayClusterConfig.managedBy: the managedBy field is immutable"
    ):
        validate(moved, old=managed)
    with pytest.raises(InvalidManifest, match=r"managedBy field value must be either"):
        validate(broken(service, lambda d: d["spec"]["rayClusterConfig"].update(managedBy="me")))
