"""The argocd role's install step (roles/argocd/tasks/install.yml) against a real kube-apiserver
(tests/kube): upstream's pinned install.yaml downloaded (from the local copy), checked, applied server-side,
and waited for; run twice, the second run moves no object's generation.

What cannot run here: no kubelet, so no ArgoCD pod ever starts. `StatusWriter` (TEST-ONLY, never shipped)
writes the status the Deployment and StatefulSet controllers would write, at each object's current generation,
so the role's waits are exercised against what it reads: observedGeneration, updated/ready/available replicas.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.cluster.upstream import documents, pins, read_pinned
from tests.kube import apiserver

pytestmark = [pytest.mark.integration]
NAMESPACE = "argocd"


class StatusWriter:
    """Marks every Deployment/StatefulSet in the namespace rolled out at its current generation, once each."""

    def __init__(self, kubeconfig: Path):
        api_client = config.new_client_from_config(str(kubeconfig))
        self.apps = client.AppsV1Api(api_client)
        self.written: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for kind, items, patch in (
                (
                    "Deployment",
                    self.apps.list_namespaced_deployment,
                    self.apps.patch_namespaced_deployment_status,
                ),
                (
                    "StatefulSet",
                    self.apps.list_namespaced_stateful_set,
                    self.apps.patch_namespaced_stateful_set_status,
                ),
            ):
                for obj in items(NAMESPACE).items:
                    key, generation = (kind, obj.metadata.name), obj.metadata.generation
                    if self.written.get(key) == generation:
                        continue
                    n = obj.spec.replicas if obj.spec.replicas is not None else 1
                    status = {
                        "observedGeneration": generation,
                        "replicas": n,
                        "updatedReplicas": n,
                        "readyReplicas": n,
                        "availableReplicas": n,
                    }
                    if kind == "StatefulSet":
                        status.update({"currentReplicas": n, "currentRevision": "r1", "updateRevision": "r1"})
                    patch(obj.metadata.name, NAMESPACE, {"status": status})
                    self.written[key] = generation


def generations(kube_api) -> dict[tuple[str, str], int | None]:
    out = {}
    for kinds, where in (
        ("crd,clusterrole,clusterrolebinding", []),
        ("deploy,sts,svc,cm,secret,sa,role,rolebinding,networkpolicy", ["-n", NAMESPACE]),
    ):
        for item in json.loads(kube_api.kubectl("get", kinds, *where, "-o", "json").stdout)["items"]:
            out[item["kind"], item["metadata"]["name"]] = item["metadata"].get("generation")
    return out


def run_install(kube_api, tmp_path: Path, artifacts: Path, manifest: Path, sha256: str):
    extra = {
        "argocd_kubeconfig": str(kube_api.kubeconfig),
        "argocd_artifacts_dir": str(artifacts),
        # get_url checks the digest as it does on a download
        "argocd_install_manifest_url": manifest.resolve().as_uri(),
        "argocd_install_manifest_checksum": f"sha256:{sha256}",
        "argocd_poll_seconds": 1,
        "argocd_wait_timeout": 120,
    }
    task = {
        "name": "Install ArgoCD",
        "ansible.builtin.include_role": {"name": "argocd", "tasks_from": "install.yml"},
    }
    return apiserver.run_play(
        kube_api, tmp_path / "install.yml", "The argocd role's install step", task, extra
    )


def test_install_applies_upstreams_manifest_server_side_waits_and_reapplies(kube_api, tmp_path):
    install = pins()[0]
    read_pinned(install)  # the local copy is upstream's file, byte for byte, at the role's pinned sha256
    manifest, sha256 = install.local, install.sha256
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with StatusWriter(kube_api.kubeconfig) as writer:
        first = run_install(kube_api, tmp_path, artifacts, manifest, sha256)
        assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
        before = generations(kube_api)
        second = run_install(kube_api, tmp_path, artifacts, manifest, sha256)
    assert second.returncode == 0, second.stdout[-4000:]
    # The second run changes nothing: no task reports a change (the recap), no object's generation moves.
    assert re.search(r"localhost\s*:\s*ok=\d+\s+changed=0\s", second.stdout), second.stdout[-4000:]
    assert generations(kube_api) == before
    assert "changed=0" not in first.stdout  # the first run did apply something
    # Every object of the manifest is on the server, as the kind and name upstream gave it.
    wanted = {(doc["kind"], doc["metadata"]["name"]) for doc in documents(install)}
    found = set()
    for kind, name in wanted:
        args = ["get", kind, name, "-o", "name"]
        if kind not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            args += ["-n", NAMESPACE]
        if kube_api.kubectl(*args, check=False).returncode == 0:
            found.add((kind, name))
    assert found == wanted, sorted(wanted - found)
    # The role waited on what the controllers would write: every Deployment and the StatefulSet got a status.
    assert {k for k, _ in writer.written} == {"Deployment", "StatefulSet"}
    managers = json.loads(
        kube_api.kubectl("get", "deployment", "argocd-server", "-n", NAMESPACE, "-o", "json").stdout
    )["metadata"]["managedFields"]
    assert any(f["manager"] == "chiops" and f["operation"] == "Apply" for f in managers), managers
