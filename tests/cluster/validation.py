"""Validation of rendered manifests: core kinds against Kubernetes' own OpenAPI schemas (kubernetes-validate),
custom resources against the subset schemas in tests/schemas/ (derived from the published CRDs)."""

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
# Kubespray v2.31.0 installs Kubernetes 1.35.4; kubernetes-validate 1.37.0 ships schemas for 1.25.0 ... 1.37.0,
# and patch releases do not change the API, so 1.35.0 is the exact match.
KUBERNETES_VERSION = "1.35.0"
CORE_GROUPS = ("v1", "apps/v1", "rbac.authorization.k8s.io/v1", "batch/v1", "networking.k8s.io/v1")


class InvalidManifest(Exception):
    pass


@cache
def crd_schema(api_version: str, kind: str) -> dict:
    path = SCHEMAS / f"{api_version.replace('/', '_')}_{kind}.json"
    if not path.exists():
        raise InvalidManifest(f"no schema for {api_version} {kind} in tests/schemas")
    return json.loads(path.read_text())


def validate_core(doc: dict) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
        raise InvalidManifest(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {error}") from error


def validate_pod_template(template: dict, where: str) -> None:
    """Pod templates inside custom resources get Kubernetes' own PodTemplate schema."""
    validate_core(
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": where},
            "template": copy.deepcopy(template),
        }
    )


def validate(doc: dict) -> None:
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if api_version in CORE_GROUPS:
        validate_core(doc)
        return
    try:
        jsonschema.validate(doc, crd_schema(api_version, kind))
    except jsonschema.ValidationError as error:
        path = "/".join(str(p) for p in error.absolute_path)
        raise InvalidManifest(f"{kind} {doc['metadata'].get('name')}: {path}: {error.message}") from error
    if kind == "RayService":
        cluster = doc["spec"]["rayClusterConfig"]
        validate_pod_template(cluster["headGroupSpec"]["template"], "head")
        for group in cluster.get("workerGroupSpecs", []):
            validate_pod_template(group["template"], group["groupName"])
