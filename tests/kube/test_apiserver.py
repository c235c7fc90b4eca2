"""The test API server itself: the version built from Debian's source, TLS client auth, RBAC enforced."""

import json

import pytest

from tests.kube.apiserver import KubeAPIError


def test_serves_kubernetes_1_20_from_the_debian_build(kube_api):
    version = json.loads(kube_api.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.20.2"
    assert kube_api.server.startswith("https://127.0.0.1:")


def test_rbac_grants_a_user_only_what_a_binding_says(kube_api):
    kube_api.kubectl("create", "namespace", "kube-test-rbac")
    bob = kube_api.user_kubeconfig("kube-test-bob")
    as_bob = ("--kubeconfig", str(bob), "-n", "kube-test-rbac")

    def bob_can(*args):
        return kube_api.kubectl(*args, check=False).returncode == 0

    # kubectl() passes the admin kubeconfig first; a later --kubeconfig wins.
    assert not bob_can(*as_bob, "get", "configmaps")
    kube_api.kubectl(
        "-n", "kube-test-rbac", "create", "role", "read-cm", "--verb=get,list", "--resource=configmaps"
    )
    kube_api.kubectl("-n", "kube-test-rbac", "create", "rolebinding", "bob-read-cm", "--role=read-cm",
                     "--user=kube-test-bob")  # fmt: skip
    assert bob_can(*as_bob, "get", "configmaps")
    assert not bob_can(*as_bob, "get", "secrets")
    assert not bob_can("--kubeconfig", str(bob), "get", "namespaces")


def test_rejects_an_invalid_object(kube_api):
    with pytest.raises(KubeAPIError, match="Invalid value"):
        kube_api.kubectl("create", "namespace", "Not_A_DNS_Label")
