"""pytest plugin (registered with `-p tests.kube.plugin` in pyproject.toml): the session's API server.

    def test_something(kube_api):          # tests.kube.apiserver.KubeAPI
        kube_api.kubeconfig                # Path: admin kubeconfig (client cert in system:masters)
        kube_api.server                    # "https://127.0.0.1:<port>"
        kube_api.env()                     # os.environ + KUBECONFIG/K8S_AUTH_KUBECONFIG for ansible-playbook
        kube_api.kubectl("get", "ns")      # the kubectl built with the server
        kube_api.user_kubeconfig("bob")    # a user with only what RBAC grants

One server per session, started on first use; tests share it, so each test works in namespaces (and
cluster-scoped names) of its own.
"""

import pytest

from tests.kube import apiserver


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory):
    api = apiserver.start(tmp_path_factory.mktemp("kube-api"))
    try:
        yield api
    finally:
        api.stop()
