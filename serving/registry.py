"""Read-only access to the model registry layout of docs/contracts.md, through fsspec.

Serving reads the files training wrote; it never imports training code, so a registry on any fsspec URL
(local directory, s3://, …) works the same way.
"""

import io
import json
from dataclasses import dataclass

import fsspec

ALIASES = ("staging", "canary", "production", "previous")


class RegistryError(RuntimeError):
    """The registry is missing, malformed, or does not hold what was asked for."""


@dataclass(frozen=True)
class Registry:
    root: str

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _read_bytes(self, *parts: str) -> bytes:
        path = self._path(*parts)
        try:
            with fsspec.open(path, "rb") as fh:
                return fh.read()
        except FileNotFoundError as exc:
            raise RegistryError(f"registry file not found: {path}") from exc

    def index(self) -> dict:
        try:
            index = json.loads(self._read_bytes("index.json"))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{self._path('index.json')} is not valid JSON: {exc}") from exc
        if not isinstance(index.get("versions"), dict) or not isinstance(index.get("aliases"), dict):
            raise RegistryError(f"{self._path('index.json')} lacks the 'versions' and 'aliases' objects")
        return index

    def resolve(self, ref: str) -> str:
        """Return the version a reference names: a version (``v3``) as is, an alias through index.json."""
        index = self.index()
        if ref in index["versions"]:
            return ref
        if ref in index["aliases"]:
            target = index["aliases"][ref]
            if target is None:
                raise RegistryError(f"alias {ref!r} points at no version")
            if target not in index["versions"]:
                raise RegistryError(f"alias {ref!r} points at {target!r}, which is not registered")
            return target
        known = sorted(index["versions"]) + sorted(index["aliases"])
        raise RegistryError(f"{ref!r} is neither a registered version nor an alias (known: {known})")

    def alias_target(self, alias: str) -> str | None:
        return self.index()["aliases"].get(alias)

    # The readers below take a version or an alias.
    def model_bytes(self, ref: str) -> bytes:
        return self._read_bytes("versions", self.resolve(ref), "model.ts")

    def card(self, ref: str) -> dict:
        return json.loads(self._read_bytes("versions", self.resolve(ref), "card.json"))

    def test_split(self, ref: str):
        """(images (N, 8, 8) float32, labels (N,) int64) the card's metrics were measured on."""
        import numpy as np

        with np.load(io.BytesIO(self._read_bytes("versions", self.resolve(ref), "test_split.npz"))) as data:
            return data["images"].astype(np.float32), data["labels"].astype(np.int64)


def card_summary(card: dict) -> dict:
    """The part of a model card /version shows: what it is, where it came from, how good it measured."""
    metrics = card.get("metrics", {})
    config = card.get("config", {})
    return {
        "version": card.get("version"),
        "created": card.get("created"),
        "config": config.get("name") if isinstance(config, dict) else config,
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "ece": metrics.get("ece"),
        "torch_version": card.get("torch_version"),
        "git_commit": card.get("git_commit"),
    }
