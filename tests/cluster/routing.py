"""Where a request to the public Gateway ends up, by Gateway API's HTTPRoute rules and Ray Serve's route
prefixes.

Used to check the rendered routes against the rendered serveConfigV2 (and by the image test, to send requests
to a container along the same path the HTTPRoute would). Implements what the rendered routes use: PathPrefix
matches (longest prefix wins across the routes on one Gateway; a prefix matches whole path segments), weighted
backendRefs, and the URLRewrite filter's ReplacePrefixMatch.
"""

from __future__ import annotations

import dataclasses

import yaml


@dataclasses.dataclass(frozen=True)
class Hop:
    """One backend a request may go to: the Service (namespace, name, port), its weight, and the rewritten
    path."""

    namespace: str
    service: str
    port: int
    weight: int
    path: str


def prefix_matches(prefix: str, path: str) -> bool:
    """Gateway API PathPrefix: "/staging" matches /staging and /staging/x, not /stagingx."""
    prefix = prefix.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def rewrite(prefix: str, replacement: str, path: str) -> str:
    """ReplacePrefixMatch: the matched prefix is replaced; "/staging/predict" with "/" becomes "/predict"."""
    rest = path[len(prefix.rstrip("/")) :]
    joined = replacement.rstrip("/") + rest
    return joined if joined.startswith("/") else "/" + joined


def route(routes: list[dict], path: str) -> list[Hop]:
    """The backends `path` may reach through these HTTPRoutes (all on one Gateway); [] when none matches."""
    best = None
    for obj in routes:
        for rule in obj["spec"]["rules"]:
            for match in rule.get("matches", [{"path": {"type": "PathPrefix", "value": "/"}}]):
                assert match["path"]["type"] == "PathPrefix", match
                prefix = match["path"]["value"]
                if prefix_matches(prefix, path) and (best is None or len(prefix) > len(best[0])):
                    best = (prefix, rule, obj["metadata"]["namespace"])
    if best is None:
        return []
    prefix, rule, namespace = best
    new_path = path
    for flt in rule.get("filters", []):
        if flt["type"] == "URLRewrite":
            spec = flt["urlRewrite"]["path"]
            assert spec["type"] == "ReplacePrefixMatch", spec
            new_path = rewrite(prefix, spec["replacePrefixMatch"], path)
    return [
        Hop(ref.get("namespace", namespace), ref["name"], ref["port"], ref.get("weight", 1), new_path)
        for ref in rule["backendRefs"]
    ]


def serve_app(serve_config: dict, path: str) -> tuple[str, str] | None:
    """The Serve application (name) a path reaches inside the pod, and the path the app sees; longest prefix
    wins."""
    best = None
    for app in serve_config["applications"]:
        prefix = app["route_prefix"]
        if prefix_matches(prefix, path) and (best is None or len(prefix) > len(best["route_prefix"])):
            best = app
    if best is None:
        return None
    return best["name"], rewrite(best["route_prefix"], "/", path)


def serve_config_of(rayservice: dict) -> dict:
    return yaml.safe_load(rayservice["spec"]["serveConfigV2"])
