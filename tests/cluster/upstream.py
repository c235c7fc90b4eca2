"""The upstream CRDs the product pins, read from the local byte-for-byte copies and checked against the pins.

The pins live in roles/argocd/defaults/main.yml: ArgoCD's install.yaml (argocd_version,
argocd_install_manifest_checksum), which carries ArgoCD's own CRDs, and argocd_platform_crds (KubeRay, Gateway
API). The copies live in $CHIOPS_UPSTREAM_DIR (default ../shared/upstream beside the checkout) as
<project>-<version>/<file name>; a missing copy or a digest that differs from the pin is an error, never a
skip.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ARGOCD_DEFAULTS = ROOT / "roles" / "argocd" / "defaults" / "main.yml"


class UpstreamError(Exception):
    pass


def upstream_dir() -> Path:
    return Path(os.environ.get("CHIOPS_UPSTREAM_DIR", ROOT.parent / "shared" / "upstream"))


@dataclass(frozen=True)
class Pin:
    project: str
    version: str
    path: str
    sha256: str

    @property
    def local(self) -> Path:
        return upstream_dir() / f"{self.project}-{self.version}" / Path(self.path).name


@cache
def pins() -> tuple[Pin, ...]:
    """Every pinned upstream file: ArgoCD's install.yaml first, then the platform CRDs."""
    defaults = yaml.safe_load(ARGOCD_DEFAULTS.read_text())
    checksum = defaults["argocd_install_manifest_checksum"]
    if not checksum.startswith("sha256:"):
        raise UpstreamError(f"argocd_install_manifest_checksum is not pinned ({checksum!r})")
    install = Pin(
        "argo-cd", defaults["argocd_version"], "manifests/install.yaml", checksum.removeprefix("sha256:")
    )
    return (install, *(Pin(**crd) for crd in defaults["argocd_platform_crds"]))


def read_pinned(pin: Pin) -> bytes:
    if not pin.local.is_file():
        raise UpstreamError(f"no local copy of {pin.project} {pin.version} {pin.path} at {pin.local}")
    data = pin.local.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != pin.sha256:
        raise UpstreamError(f"{pin.local}: sha256 {digest} differs from the pinned {pin.sha256}")
    return data


def documents(pin: Pin) -> list[dict]:
    """The pinned file's YAML documents. Parsing ~7 MB of CRDs takes half a minute, so the parse is cached as
    JSON under ~/.cache/chiops/upstream/, keyed on the verified sha256."""
    data = read_pinned(pin)
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chiops" / "upstream"
    cached = cache_dir / f"{pin.sha256}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    docs = [doc for doc in yaml.load_all(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if doc]
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(docs))
    partial.replace(cached)
    return docs


@cache
def crds() -> dict[str, dict]:
    """Pinned CustomResourceDefinitions by name (ArgoCD's taken from the pinned install.yaml itself)."""
    found = {}
    for pin in pins():
        for doc in documents(pin):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                found[doc["metadata"]["name"]] = doc
    return found


@dataclass(frozen=True)
class Served:
    crd: str
    api_version: str
    kind: str
    schema: dict
    scope: str


@cache
def served() -> dict[tuple[str, str], Served]:
    """(apiVersion, kind) -> the served version's full openAPIV3Schema."""
    table = {}
    for name, crd in crds().items():
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                api_version = f"{spec['group']}/{version['name']}"
                table[(api_version, spec["names"]["kind"])] = Served(
                    name,
                    api_version,
                    spec["names"]["kind"],
                    version["schema"]["openAPIV3Schema"],
                    spec["scope"],
                )
    return table
