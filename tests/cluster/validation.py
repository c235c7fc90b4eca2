"""Validation of rendered manifests as the API server of the target cluster would do it.

- Custom resources of the pinned upstream CRDs (tests/cluster/upstream.py: KubeRay, Gateway API, ArgoCD):
  the served version's full openAPIV3Schema, after structural defaulting as the API server applies it, then
  every x-kubernetes-validations (CEL) rule at its schema node with `self` bound to the value there (and
  `oldSelf` to the old value, for transition rules, when an old object is given). Unknown fields are errors
  (kubectl's default --validate=strict), except under x-kubernetes-preserve-unknown-fields. metadata gets
  Kubernetes' ObjectMeta schema; pod templates inside RayServices get Kubernetes' PodTemplate schema.
- Core kinds: Kubernetes' own OpenAPI schemas (kubernetes-validate) of the version Kubespray installs.
- PodMonitor and PrometheusRule (prometheus-operator): the kinds without an upstream copy here; tests/schemas/
  holds hand-derived subsets of their CRDs (see its README).
Not checked: `format` values (int32, date-time, ...) and the API server's cost limits on CEL rules.
"""

import copy
import json
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate

from tests.cluster import cel, upstream

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
# Kubespray v2.31.0 installs Kubernetes 1.35.4; kubernetes-validate 1.37.0 ships schemas for 1.25.0 ...
# 1.37.0, and patch releases do not change the API, so 1.35.0 is the exact match.
KUBERNETES_VERSION = "1.35.0"
HAND_DERIVED = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}


class InvalidManifest(Exception):
    pass


def _strict(schema: dict) -> dict:
    """The structural schema as JSON Schema: nullable allowed, unknown fields rejected, CEL left to cel.py."""
    out = {k: v for k, v in schema.items() if k not in ("x-kubernetes-validations", "default", "nullable")}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = _strict(schema["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            out[key] = [_strict(s) for s in schema[key]]
    if "not" in schema:
        out["not"] = _strict(schema["not"])
    if schema.get("x-kubernetes-embedded-resource") and "properties" in out:
        out["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                             "metadata": {"type": "object"}, **out["properties"]}  # fmt: skip
    return out


@cache
def _validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    schema = _strict(upstream.served()[(api_version, kind)].schema)
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by Kubernetes' own schema
    return jsonschema.Draft4Validator(schema)


def _child(schema: dict, key) -> dict | None:
    if isinstance(key, int):
        return schema.get("items")
    if key in schema.get("properties", {}):
        return schema["properties"][key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def apply_defaults(value, schema: dict) -> None:
    """Structural defaulting, in place, as the API server does before validating."""
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub = _child(schema, key)
            if sub is not None:
                apply_defaults(item, sub)
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            apply_defaults(item, schema["items"])


def _old_item(schema: dict, item: dict, old_list):
    """The old element a new one correlates with: only list-type=map lists correlate (by their keys)."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old_list, list):
        return None
    keys = schema.get("x-kubernetes-list-map-keys", [])
    for old in old_list:
        if isinstance(old, dict) and all(old.get(k) == item.get(k) for k in keys):
            return old
    return None


_MISSING = object()


def cel_violations(value, schema: dict, old=_MISSING, path: str = "") -> list[str]:
    """Every failed x-kubernetes-validations rule under this node, as '<path>: <message>'."""
    if value is None:
        return []
    found = []
    for spec in schema.get("x-kubernetes-validations", []):
        rule = cel.compile_rule(spec["rule"])
        if rule.transition and old is _MISSING:
            continue
        passed, why = cel.evaluate(rule, value, None if old is _MISSING else old)
        if not passed:
            message = spec.get("message") or f"failed rule: {spec['rule']}"
            found.append(f"{path or '<root>'}: {message}" + (f" ({why})" if why else ""))
    if isinstance(value, dict):
        for key, item in value.items():
            sub = _child(schema, key)
            if sub is not None:
                item_old = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                found += cel_violations(item, sub, item_old, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            match = _old_item(schema, item, old) if isinstance(item, dict) else None
            found += cel_violations(
                item, schema["items"], _MISSING if match is None else match, f"{path}[{index}]"
            )
    return found


def validate_core(doc: dict) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as error:
        raise InvalidManifest(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {error}") from error


def validate_metadata(doc: dict) -> None:
    """ObjectMeta of a custom resource, through Kubernetes' own schema (a ConfigMap carries it)."""
    validate_core(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": copy.deepcopy(doc.get("metadata", {}))}
    )


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


def _hand_derived(doc: dict) -> None:
    schema = json.loads((SCHEMAS / f"{doc['apiVersion'].replace('/', '_')}_{doc['kind']}.json").read_text())
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as error:
        path = "/".join(str(p) for p in error.absolute_path)
        raise InvalidManifest(
            f"{doc['kind']} {doc['metadata'].get('name')}: {path}: {error.message}"
        ) from error


def validate_custom(doc: dict, old: dict | None = None) -> dict:
    """Validates a custom resource of a pinned CRD; returns it as stored (defaults applied)."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    served = upstream.served()[(api_version, kind)]
    name = f"{kind} {doc.get('metadata', {}).get('name')}"
    stored = copy.deepcopy(doc)
    apply_defaults(stored, served.schema)
    errors = sorted(_validator(api_version, kind).iter_errors(stored), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:10]]
        raise InvalidManifest(f"{name} ({served.crd}): " + "; ".join(lines))
    validate_metadata(doc)
    if old is not None:
        old = copy.deepcopy(old)
        apply_defaults(old, served.schema)
    violations = cel_violations(stored, served.schema, _MISSING if old is None else old)
    if violations:
        raise InvalidManifest(f"{name} ({served.crd}) x-kubernetes-validations: " + "; ".join(violations))
    return stored


def validate(doc: dict, old: dict | None = None) -> None:
    """Raises InvalidManifest unless the API server of the target cluster would accept doc (old: on
    update)."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    if (api_version, kind) in upstream.served():
        validate_custom(doc, old)
        if kind == "RayService":
            cluster = doc["spec"]["rayClusterConfig"]
            validate_pod_template(cluster["headGroupSpec"]["template"], "head")
            for group in cluster.get("workerGroupSpecs", []):
                validate_pod_template(group["template"], group["groupName"])
    elif (api_version, kind) in HAND_DERIVED:
        _hand_derived(doc)
    else:
        validate_core(doc)
