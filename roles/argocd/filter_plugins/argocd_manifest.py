"""Upstream's install manifest as the API server stores it, so that applying it again changes nothing.

ArgoCD's install.yaml is written for `kubectl apply -n argocd`: its namespaced objects name no namespace,
and some Service and NetworkPolicy ports omit `protocol`, which the API fills in as TCP. Applied through
kubernetes.core with `namespace:` for the whole file, the cluster-scoped objects got that namespace too and
were rewritten on every run, and so were the NetworkPolicies whose default the server filled in (measured on
kube-apiserver 1.20: each re-apply moved their resourceVersion and reported changed; Services without
`protocol` are refused outright by 1.20's server-side apply). Stating the namespace only where it belongs and
the API's own default where it was left out changes no object's meaning.
"""

import copy

from ansible.errors import AnsibleFilterError

# The cluster-scoped kinds install.yaml holds (and the others a future version could add).
CLUSTER_SCOPED = frozenset(
    {
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PriorityClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
    }
)


def _ports(doc):
    spec = doc.get("spec") or {}
    if doc["kind"] == "Service":
        return spec.get("ports") or []
    if doc["kind"] == "NetworkPolicy":
        rules = (spec.get("ingress") or []) + (spec.get("egress") or [])
        return [port for rule in rules for port in rule.get("ports") or []]
    return []


def argocd_manifest(documents, namespace):
    """The non-empty documents, each namespaced one in `namespace`, every port's protocol stated."""
    if not namespace:
        raise AnsibleFilterError("argocd_manifest needs the namespace to install into")
    out = []
    for doc in documents or []:
        if not doc:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "metadata" not in doc:
            raise AnsibleFilterError(f"not a Kubernetes object in the install manifest: {str(doc)[:200]}")
        doc = copy.deepcopy(doc)
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"].setdefault("namespace", namespace)
        for port in _ports(doc):
            port.setdefault("protocol", "TCP")
        out.append(doc)
    return out


class FilterModule:
    def filters(self):
        return {"argocd_manifest": argocd_manifest}
