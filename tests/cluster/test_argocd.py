"""What roles/argocd applies: valid ArgoCD objects, a working RayService health check, the password filter."""

import importlib.util

import lupa.lua51
import pytest
from ansible.errors import AnsibleFilterError

from tests.cluster.rendering import ROOT, load_documents
from tests.cluster.validation import InvalidManifest, validate

LUA_DIR = ROOT / "roles" / "argocd" / "files"


def test_rendered_argocd_manifests_validate(argocd_dir):
    kinds = {}
    for path in sorted(argocd_dir.glob("*.yaml")):
        for doc in load_documents(path):
            validate(doc)
            kinds[doc["kind"]] = doc
    assert set(kinds) == {"ConfigMap", "Application", "ApplicationSet"}
    appset = kinds["ApplicationSet"]
    assert appset["spec"]["goTemplate"] is True
    # a production cluster hosts the canary (inventories/canary is shared_with production) and the rollout's
    # staging checks too. The git directory generator makes an Application only for a directory the rollout
    # has pushed, and lists no wildcard that could match an environment this cluster does not host.
    (generator,) = appset["spec"]["generators"]
    assert generator["git"]["repoURL"] == "https://git.example.org/chiops/desired-state.git"
    assert [d["path"] for d in generator["git"]["directories"]] == [
        "environments/staging",
        "environments/canary",
        "environments/production",
    ]
    template = appset["spec"]["template"]
    assert template["spec"]["source"] == {
        "repoURL": generator["git"]["repoURL"],
        "targetRevision": generator["git"]["revision"],
        "path": "{{.path.path}}",
    }
    assert template["metadata"]["name"] == "chiops-{{.path.basename}}"
    assert template["spec"]["destination"]["namespace"] == "chiops-{{.path.basename}}"
    # removing environments/<env>/ deletes the Application and, through the finalizer, what it applied
    assert template["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    assert kinds["Application"]["spec"]["source"]["path"] == "deploy/platform"
    assert kinds["Application"]["spec"]["source"]["repoURL"] == "https://git.example.org/chiops/chiops.git"


def test_a_broken_applicationset_is_rejected(argocd_dir):
    (appset,) = load_documents(argocd_dir / "environments-applicationset.yaml")
    del appset["spec"]["template"]["spec"]["destination"]
    with pytest.raises(InvalidManifest, match="destination"):
        validate(appset)


def health(script_name, obj):
    """Runs an ArgoCD health script the way ArgoCD does: Lua 5.1 (gopher-lua), `obj` a global table."""
    lua = lupa.lua51.LuaRuntime(unpack_returned_tuples=True)

    def to_lua(value):
        if isinstance(value, dict):
            return lua.table_from({k: to_lua(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([to_lua(v) for v in value])
        return value

    lua.globals().obj = to_lua(obj)
    result = lua.execute((LUA_DIR / script_name).read_text())
    return result["status"], result["message"]


def rayservice(*conditions):
    return {"apiVersion": "ray.io/v1", "kind": "RayService", "status": {"conditions": list(conditions)}}


@pytest.mark.parametrize(
    ("obj", "status"),
    [
        ({"kind": "RayService"}, "Progressing"),
        (rayservice({"type": "Ready", "status": "False", "reason": "Initializing"}), "Progressing"),
        (rayservice({"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}), "Healthy"),
        (
            rayservice(
                {"type": "Ready", "status": "True"},
                {"type": "UpgradeInProgress", "status": "True", "message": "new cluster starting"},
            ),
            "Progressing",
        ),
        (
            rayservice({"type": "Ready", "status": "False", "reason": "ZeroServeEndpoints", "message": "x"}),
            "Degraded",
        ),
    ],
)
def test_rayservice_health_check(obj, status):
    assert health("rayservice_health.lua", obj)[0] == status


def test_application_health_check_passes_the_child_health_up():
    assert health("application_health.lua", {"status": {"health": {"status": "Degraded"}}})[0] == "Degraded"
    assert health("application_health.lua", {})[0] == "Progressing"


def load_filter(name="argocd_bcrypt"):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"roles/argocd/filter_plugins/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_filter_namespaces_only_namespaced_objects_and_states_default_protocols():
    from tests.cluster.upstream import documents, pins

    f = load_filter("argocd_manifest")
    upstream = documents(pins()[0])
    out = f.argocd_manifest([None, *upstream], "argocd")
    assert len(out) == len(upstream)
    for before, after in zip(upstream, out, strict=True):
        scoped = before["kind"] in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
        assert after["metadata"].get("namespace") == (None if scoped else "argocd"), before["kind"]
        for port in f._ports(after):
            assert port["protocol"] in ("TCP", "UDP", "SCTP")
    # nothing else moved: with the two additions taken out again, every object is upstream's
    for doc in out:
        if doc["kind"] not in f.CLUSTER_SCOPED:
            del doc["metadata"]["namespace"]
    assert sum(p.get("protocol") is None for d in upstream for p in f._ports(d)) > 0  # the case exists
    stated = {id(p) for d in upstream for p in f._ports(d) if "protocol" in p}
    for doc, orig in zip(out, upstream, strict=True):
        for port, orig_port in zip(f._ports(doc), f._ports(orig), strict=True):
            if id(orig_port) not in stated:
                assert port.pop("protocol") == "TCP"
    assert out == upstream
    with pytest.raises(AnsibleFilterError, match="not a Kubernetes object"):
        f.argocd_manifest(["just text"], "argocd")


def test_password_filter_hashes_like_argocd_and_recognises_its_hash():
    f = load_filter()
    stored = f.argocd_bcrypt_hash("s3cret", rounds=4)
    assert stored.startswith("$2a$04$")
    assert f.argocd_bcrypt_matches(stored, "s3cret")
    assert not f.argocd_bcrypt_matches(stored, "other")
    assert not f.argocd_bcrypt_matches("", "s3cret")
    assert not f.argocd_bcrypt_matches("not-a-hash", "s3cret")
