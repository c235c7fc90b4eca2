"""The GitOps backend's waits against a real kube-apiserver (tests/kube), and the token Secret applied from
Vault.

What cannot run here, and what stands in for it (TEST-ONLY, never shipped):
- ArgoCD's application controller and the KubeRay operator: `StatusWriter` below applies what the
  desired-state repository holds at a commit and writes the status fields those controllers write
  (Application status.sync/health; RayService status.observedGeneration/conditions; HTTPRoute
  status.parents, as the Gateway controller does), each step explicitly, so the test decides when a
  controller "has acted".
- KubeRay's and Gateway API's CRDs: v1.20 cannot hold them (CEL). Structural stand-in CRDs for RayService and
  HTTPRoute (labelled chiops.io/test-stand-in) keep what the waits rely on: a status subresource, so
  metadata.generation moves only with the spec. Their real schemas are checked offline
  (tests/cluster/validation.py). ArgoCD's Application CRD is the upstream one.
- The serve app behind the gateway: `VersionServer`, a minimal HTTP server on 127.0.0.1 answering
  /<env>/version the way the Serve app answers /version behind its HTTPRoute.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config

from rollout.backend import BackendError
from rollout.backends import load
from tests.cluster.rendering import ROOT
from tests.cluster.upstream import upstream_dir
from tests.kube import apiserver
from tests.trained_registry import build_registry

STAND_IN = {"chiops.io/test-stand-in": "true"}


def stand_in_crd(group: str, kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{group}",
            "labels": STAND_IN,
            # The API server refuses a CRD in a *.k8s.io group without it (the upstream Gateway API CRDs carry
            # it).
            "annotations": {
                "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/891"
            },
        },
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


class VersionServer:
    """TEST-ONLY: answers GET /<env>/version like the Serve app behind its HTTPRoute ({"model_version":
    ...})."""

    def __init__(self):
        self.versions: dict[str, str] = {}
        versions = self.versions

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                env, _, rest = self.path.strip("/").partition("/")
                if rest != "version" or env not in versions:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps({"environment": env, "model_version": versions[env]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class StatusWriter:
    """TEST-ONLY stand-in for ArgoCD's application controller, the KubeRay operator and the Gateway
    controller."""

    def __init__(self, kube_api, remote: Path):
        self.kube_api, self.remote = kube_api, remote
        self.api = client.CustomObjectsApi(
            config.new_client_from_config(config_file=str(kube_api.kubeconfig))
        )

    def argocd_sync(self, env: str, commit: str) -> None:
        """What ArgoCD does for Application chiops-<env>: apply environments/<env>/ at `commit`, then report
        it."""
        files = subprocess.run(
            ["git", "-C", str(self.remote), "ls-tree", "--name-only", commit, f"environments/{env}/"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        for path in files:
            text = subprocess.run(
                ["git", "-C", str(self.remote), "show", f"{commit}:{path}"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            doc = yaml.safe_load(text)
            if doc["kind"] == "ReferenceGrant":
                continue  # no stand-in: nothing here reads it
            self.kube_api.kubectl(
                "apply",
                "--server-side",
                "--field-manager=argocd-controller",
                "-f",
                "-",
                input=json.dumps(doc),
            )
        app = {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": f"chiops-{env}", "namespace": "argocd"},
            "spec": {
                "project": "default",
                "source": {
                    "repoURL": str(self.remote),
                    "path": f"environments/{env}",
                    "targetRevision": "main",
                },
                "destination": {"server": "https://kubernetes.default.svc", "namespace": f"chiops-{env}"},
            },
            "status": {
                "sync": {"status": "Synced", "revision": commit},
                "health": {"status": "Healthy"},
            },
        }
        # The Application CRD has no status subresource: ArgoCD writes status with the object itself.
        self.kube_api.kubectl(
            "apply",
            "--server-side",
            "--field-manager=argocd-application-controller",
            "-f",
            "-",
            input=json.dumps(app),
        )

    def rayservice(self, env: str) -> dict:
        return self.api.get_namespaced_custom_object(
            "ray.io", "v1", f"chiops-{env}", "rayservices", f"chiops-{env}"
        )

    def kuberay_observe(self, env: str, upgrading: bool = False) -> None:
        """What KubeRay writes once it has acted on the RayService's current spec."""
        generation = self.rayservice(env)["metadata"]["generation"]
        conditions = [{"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints"}]
        if upgrading:
            conditions.append(
                {"type": "UpgradeInProgress", "status": "True", "reason": "BothActivePendingClustersExist"}
            )
        self.api.patch_namespaced_custom_object_status(
            "ray.io",
            "v1",
            f"chiops-{env}",
            "rayservices",
            f"chiops-{env}",
            {"status": {"observedGeneration": generation, "conditions": conditions}},
        )

    def gateway_accept(self) -> None:
        """What the Gateway controller writes when it programs the public route's current generation."""
        route = self.api.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", "chiops-production", "httproutes", "chiops-public"
        )
        generation = route["metadata"]["generation"]
        parent = {
            "parentRef": route["spec"]["parentRefs"][0],
            "controllerName": "traefik.io/gateway-controller",
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": t,
                    "message": "",
                    "observedGeneration": generation,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
                for t in ("Accepted", "ResolvedRefs")
            ],
        }
        self.api.patch_namespaced_custom_object_status(
            "gateway.networking.k8s.io",
            "v1",
            "chiops-production",
            "httproutes",
            "chiops-public",
            {"status": {"parents": [parent]}},
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """An API server of this module's own: the stand-in CRDs take the real kinds' names, so they must not meet
    tests that apply the upstream CRDs to the session's shared server."""
    kube_api = apiserver.start(tmp_path_factory.mktemp("kube-gitops"))
    try:
        yield prepare(kube_api)
    finally:
        kube_api.stop()


def prepare(kube_api):
    for crd in (
        stand_in_crd("ray.io", "RayService", "rayservices"),
        stand_in_crd("gateway.networking.k8s.io", "HTTPRoute", "httproutes"),
    ):
        kube_api.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(crd))
    kube_api.kubectl(
        "apply", "--server-side", "-f", str(upstream_dir() / "argo-cd-v3.4.6" / "application-crd.yaml")
    )
    # kubectl 1.20's wait errors out (rather than waits) on a CRD whose status is not written yet: poll it.
    deadline = time.monotonic() + 60
    while kube_api.kubectl(
        "wait", "--for=condition=Established", "--timeout=10s", "crd", "--all", check=False
    ).returncode:
        assert time.monotonic() < deadline, "CRDs not Established within 60 s"
        time.sleep(1)
    for ns in ("argocd", "chiops-staging", "chiops-canary", "chiops-production"):
        kube_api.kubectl("create", "namespace", ns, check=False)
    return kube_api


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    return build_registry(root, versions=((0, 1), (1, 1)), aliases={})


@pytest.fixture
def setup(cluster, registry, tmp_path):
    remote = tmp_path / "desired-state.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    server = VersionServer()
    backend = load(
        "kubernetes",
        {
            "chiops_desired_state_repo": str(remote),
            "chiops_desired_state_dir": str(tmp_path / "clone"),
            "chiops_registry": str(registry),
            "chiops_kubeconfig": str(cluster.kubeconfig),
            "chiops_gateway_url": server.url,
            "chiops_wait_poll_seconds": 0.2,
        },
    )
    yield backend, StatusWriter(cluster, remote), server
    server.stop()


def test_wait_serving_passes_only_on_the_new_generation_serving_the_version(setup):
    backend, writer, server = setup
    seen: list[str] = []
    first = backend.deploy("staging", "v1")
    writer.argocd_sync("staging", first.commit)
    writer.kuberay_observe("staging")
    server.versions["staging"] = "v1"
    backend.wait_serving("staging", "v1", 30, seen.append)
    assert seen[-1] == "staging serving v1: done"

    second = backend.deploy("staging", "v2")
    with pytest.raises(
        BackendError, match=f"ArgoCD synced {first.commit[:12]}, not yet {second.commit[:12]}"
    ):
        backend.wait_serving("staging", "v2", 0, seen.append)

    writer.argocd_sync("staging", second.commit)
    live = writer.rayservice("staging")
    # the API server moved the generation with the new spec; the status is still the previous generation's,
    # which is Ready: a wait on the Ready condition alone (what the old playbook did) would pass here
    assert live["metadata"]["generation"] == 2 and live["status"]["observedGeneration"] == 1
    assert live["status"]["conditions"][0] == {
        "type": "Ready",
        "status": "True",
        "reason": "NonZeroServeEndpoints",
    }
    with pytest.raises(BackendError, match="observed generation 1, the spec is at 2"):
        backend.wait_serving("staging", "v2", 0, seen.append)

    writer.kuberay_observe("staging", upgrading=True)
    with pytest.raises(BackendError, match="UpgradeInProgress"):
        backend.wait_serving("staging", "v2", 0, seen.append)

    writer.kuberay_observe("staging")
    with pytest.raises(BackendError, match="/staging/version answers v1, not v2"):
        backend.wait_serving("staging", "v2", 0, seen.append)

    server.versions["staging"] = "v2"
    backend.wait_serving("staging", "v2", 30, seen.append)
    assert seen[-1] == "staging serving v2: done"
    # asking for a version git does not hold fails at once, whatever the cluster says
    with pytest.raises(BackendError, match="git says staging serves v2, not v1"):
        backend.wait_serving("staging", "v1", 30, seen.append)


def test_wait_split_needs_the_synced_commit_the_live_weights_and_the_gateway(setup):
    backend, writer, _ = setup
    seen: list[str] = []
    for env in ("production", "canary"):
        change = backend.deploy(env, "v1" if env == "production" else "v2")
        writer.argocd_sync(env, change.commit)
    writer.gateway_accept()
    backend.wait_split(0.0, 30, seen.append)

    split = backend.set_split("v1", "v2", 0.1)
    with pytest.raises(BackendError, match="not yet"):
        backend.wait_split(0.1, 0, seen.append)
    writer.argocd_sync("production", split.commit)
    # synced, live weights 90/10, but the Gateway has not programmed this generation of the route yet
    with pytest.raises(BackendError, match="has not accepted generation 2"):
        backend.wait_split(0.1, 0, seen.append)
    writer.gateway_accept()
    backend.wait_split(0.1, 30, seen.append)
    with pytest.raises(BackendError, match="git says the canary gets 10%, not 50%"):
        backend.wait_split(0.5, 30, seen.append)


def run_secrets(kube_api, tmp_path, key: str | None, store: dict | None) -> subprocess.CompletedProcess:
    extra = {
        "k8s_secrets_kubeconfig": str(kube_api.kubeconfig),
        "k8s_secrets_environments": ["canary", "production"],
    }
    if key is not None:
        extra["chiops_token_key"] = key
    if store is not None:
        extra["k8s_secrets_object_store_env"] = store
    task = {
        "name": "The task file cluster.yml runs",
        "ansible.builtin.include_tasks": str(ROOT / "playbooks" / "tasks" / "k8s_secrets.yml"),
    }
    return apiserver.run_play(
        kube_api, tmp_path / "secrets.yml", "Token key Secrets", task, extra, timeout=600
    )


def test_the_secrets_come_from_vault_and_reapply_unchanged(cluster, tmp_path):
    import base64

    key = "k" * 16 + "0123456789abcdef0123"
    store = {"AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "s" * 24, "AWS_ENDPOINT": ""}
    first = run_secrets(cluster, tmp_path, key, store)
    assert first.returncode == 0, first.stdout[-3000:]
    assert key not in first.stdout + first.stderr and store["AWS_SECRET_ACCESS_KEY"] not in first.stdout
    second = run_secrets(cluster, tmp_path, key, store)
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout[-3000:]
    for env in ("canary", "production"):
        secret = cluster.get("secret", "chiops-token-key", "-n", f"chiops-{env}")
        assert base64.b64decode(secret["data"]["key"]).decode() == key
        creds = cluster.get("secret", "chiops-object-store", "-n", f"chiops-{env}")["data"]
        # every non-empty key becomes an env var of the Ray pods (envFrom); an empty endpoint is left out
        assert {k: base64.b64decode(v).decode() for k, v in creds.items()} == {
            "AWS_ACCESS_KEY_ID": "AKIDTEST",
            "AWS_SECRET_ACCESS_KEY": "s" * 24,
        }
    missing = run_secrets(cluster, tmp_path, None, store)
    assert missing.returncode != 0 and "ansible-vault encrypt_string" in missing.stdout
    no_store = run_secrets(cluster, tmp_path, key, {"AWS_ACCESS_KEY_ID": "AKIDTEST"})
    assert no_store.returncode != 0 and "object-store credentials are missing" in no_store.stdout
