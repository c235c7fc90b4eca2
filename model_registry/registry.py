"""The model registry contract (docs/contracts.md): layout, index, aliases, resolution and safe concurrent
writes, the same on a local directory and on an S3-compatible object store.

Training writes through it and serving reads through it. Torch-free: the gate that decides whether a model may
be registered is passed in by the caller (training.gate), so the serving image needs nothing of training.

Concurrency without a lock server: index.json is only ever replaced by compare-and-swap (the store's
write_if: flock + rename locally, If-Match on S3) and every change is a pure function of the index it read,
re-applied on a lost race. A new version's number is claimed by creating versions/vN/.claim create-only
(O_EXCL locally, If-None-Match on S3), so two writers never fill the same directory; a version becomes visible
to readers only when index.json lists it, after its files are complete.
"""

from __future__ import annotations

import getpass
import io
import json
import os
import random
import re
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from model_registry.card import missing_fields, render_markdown, utc_now
from model_registry.stores import Conflict, StoreError, open_store

ALIASES = ("staging", "canary", "production", "previous")
INDEX = "index.json"
VERSIONS = "versions"
CLAIM = ".claim"
REQUIRED_FILES = ("model.ts", "state_dict.pt", "card.json", "test_split.npz")
OPTIONAL_FILES = ("validation.json", "training_history.json")
VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
DEFAULT_ROOT = "registry"
ROOT_ENV = "CHIOPS_REGISTRY"


class RegistryError(Exception):
    """A registry operation could not be done (exit code 1)."""

    exit_code = 1


class RegistryInputError(RegistryError):
    """Unknown alias or version, or an artifact directory that is not one (exit code 2)."""

    exit_code = 2


class AliasConflict(RegistryError):
    """An expected alias value did not hold (someone else moved it first)."""


class GateRefused(RegistryError):
    def __init__(self, decision: Any) -> None:
        self.decision = decision
        super().__init__(
            "quality gate refused registration:\n" + "\n".join(f"  - {r}" for r in decision.reasons)
        )


# gate(candidate model.ts, candidate test_split.npz, candidate card, production or None) -> decision with
# .passed, .reasons, .to_dict(); production is (version, model.ts bytes, card).
Gate = Callable[[bytes, bytes, dict, "tuple[str, bytes, dict] | None"], Any]


def empty_index() -> dict[str, Any]:
    return {"format": 1, "generation": 0, "versions": {}, "aliases": dict.fromkeys(ALIASES), "history": []}


def default_root() -> str:
    return os.environ.get(ROOT_ENV, DEFAULT_ROOT)


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _version_number(name: str) -> int:
    match = VERSION_RE.match(name)
    return int(match.group(1)) if match else 0


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


class Registry:
    def __init__(self, root: str | Path | None = None, contention_timeout_s: float = 120.0) -> None:
        self.root = str(root if root is not None else default_root())
        try:
            self.store = open_store(self.root)
        except StoreError as exc:
            raise RegistryInputError(str(exc)) from None
        self.contention_timeout_s = contention_timeout_s

    # ---- reading -----------------------------------------------------------------------------------
    def _parse_index(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None:
            return empty_index()
        try:
            index = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryError(
                f"{self.store.url(INDEX)} is not valid JSON ({exc}); restore it from a backup"
            ) from None
        if not isinstance(index, dict) or not isinstance(index.get("versions"), dict):
            raise RegistryError(f"{self.store.url(INDEX)} lacks the 'versions' object")
        if not isinstance(index.get("aliases"), dict):
            raise RegistryError(f"{self.store.url(INDEX)} lacks the 'aliases' object")
        index.setdefault("history", [])
        index.setdefault("generation", 0)
        return index

    def index(self) -> dict[str, Any]:
        try:
            return self._parse_index(self.store.read_versioned(INDEX)[0])
        except StoreError as exc:
            raise RegistryError(str(exc)) from None

    def resolve(self, ref: str, index: dict[str, Any] | None = None) -> str | None:
        """An alias → its version (None when unset); a version → itself if registered."""
        index = index if index is not None else self.index()
        if ref in ALIASES:
            target = index["aliases"].get(ref)
            if target is not None and target not in index["versions"]:
                raise RegistryError(f"alias {ref} points at {target}, which is not registered in {self.root}")
            return target
        if VERSION_RE.match(ref):
            if ref not in index["versions"]:
                raise RegistryInputError(f"no version {ref} in registry {self.root}")
            return ref
        raise RegistryInputError(
            f"unknown reference {ref!r}: use an alias ({', '.join(ALIASES)}) or a version like v1"
        )

    def require(self, ref: str, index: dict[str, Any] | None = None) -> str:
        version = self.resolve(ref, index)
        if version is None:
            raise RegistryError(f"alias {ref} is not set in registry {self.root}")
        return version

    def alias_target(self, alias: str) -> str | None:
        return self.index()["aliases"].get(alias)

    def version_url(self, ref: str) -> str:
        return self.store.url(f"{VERSIONS}/{self.require(ref)}")

    def read_file(self, ref: str, name: str) -> bytes:
        rel = f"{VERSIONS}/{self.require(ref)}/{name}"
        try:
            return self.store.read(rel)
        except FileNotFoundError:
            raise RegistryError(f"registry file not found: {self.store.url(rel)}") from None
        except StoreError as exc:
            raise RegistryError(str(exc)) from None

    def model_bytes(self, ref: str) -> bytes:
        return self.read_file(ref, "model.ts")

    def card(self, ref: str) -> dict[str, Any]:
        return json.loads(self.read_file(ref, "card.json"))

    def test_split(self, ref: str):
        """(images (N, 8, 8) float32, labels (N,) int64) the card's metrics were measured on."""
        import numpy as np

        with np.load(io.BytesIO(self.read_file(ref, "test_split.npz"))) as data:
            return data["images"].astype(np.float32), data["labels"].astype(np.int64)

    def history(self) -> list[dict[str, Any]]:
        return self.index()["history"]

    # ---- writing -----------------------------------------------------------------------------------
    def _update(self, change: Callable[[dict[str, Any]], Any]) -> Any:
        """Apply change(index) and replace index.json if nobody replaced it meanwhile; otherwise re-read and
        apply again. change raises to abort (nothing is written)."""
        deadline = time.monotonic() + self.contention_timeout_s
        for attempt in range(1_000_000):
            try:
                raw, token = self.store.read_versioned(INDEX)
                index = self._parse_index(raw)
                result = change(index)
                index["generation"] += 1
                self.store.write_if(INDEX, _dump(index), token)
                return result
            except Conflict:
                if time.monotonic() > deadline:
                    raise RegistryError(
                        f"{self.store.url(INDEX)} kept changing under {attempt + 1} attempts for "
                        f"{self.contention_timeout_s:.0f} s; nothing was changed"
                    ) from None
                time.sleep(random.uniform(0, min(1.0, 0.005 * 2 ** min(attempt, 8))))
            except StoreError as exc:
                raise RegistryError(str(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _apply_moves(
        index: dict[str, Any], moves: Mapping[str, str | None], expect: Mapping[str, str | None] | None
    ) -> dict[str, list[str | None]]:
        for alias in [*moves, *(expect or {})]:
            if alias not in ALIASES:
                raise RegistryInputError(f"unknown alias {alias!r}: aliases are {', '.join(ALIASES)}")
        for alias, wanted in (expect or {}).items():
            if index["aliases"].get(alias) != wanted:
                raise AliasConflict(
                    f"alias {alias} is {index['aliases'].get(alias)}, expected {wanted}; nothing moved"
                )
        for version in moves.values():
            if version is not None and version not in index["versions"]:
                raise RegistryInputError(f"no version {version} in the registry")
        changes = {}
        for alias, version in moves.items():
            old = index["aliases"].get(alias)
            if old != version:
                changes[alias] = [old, version]
            index["aliases"][alias] = version
        return changes

    @staticmethod
    def _record(
        index: dict[str, Any], event: str, changes: dict[str, Any], reason: str, **extra: Any
    ) -> None:
        index["history"].append(
            {"at": utc_now(), "event": event, "moves": changes, "reason": reason, "by": _actor(), **extra}
        )

    def move_aliases(
        self,
        moves: Mapping[str, str | None],
        expect: Mapping[str, str | None] | None = None,
        reason: str = "",
        event: str = "alias",
    ) -> dict[str, list[str | None]]:
        """Move several aliases in one index write: all move or none. `moves` values may be aliases or
        versions (resolved against the index as it was before this move); `expect` guards against a concurrent
        change (AliasConflict)."""

        def change(index: dict[str, Any]) -> dict[str, list[str | None]]:
            resolved = {a: (self.resolve(v, index) if v is not None else None) for a, v in moves.items()}
            changes = self._apply_moves(index, resolved, expect)
            self._record(index, event, changes, reason)
            return changes

        return self._update(change)

    def set_alias(
        self, alias: str, ref: str | None, expect: Mapping[str, str | None] | None = None, reason: str = ""
    ) -> dict[str, list[str | None]]:
        return self.move_aliases({alias: ref}, expect, reason)

    def promote(
        self, ref: str, reason: str = "", expect_production: str | bool | None = False
    ) -> dict[str, list[str | None]]:
        """production → ref and previous → the old production, in one step; canary/staging that pointed at the
        promoted version are cleared (it left those stages)."""

        def change(index: dict[str, Any]) -> dict[str, list[str | None]]:
            version = self.require(ref, index)
            current = index["aliases"]["production"]
            expect = {} if expect_production is False else {"production": expect_production}
            moves: dict[str, str | None] = {"production": version}
            if current != version:
                moves["previous"] = current
            for stage in ("canary", "staging"):
                if index["aliases"][stage] == version:
                    moves[stage] = None
            changes = self._apply_moves(index, moves, expect)
            self._record(index, "promote", changes, reason, version=version)
            return changes

        return self._update(change)

    def rollback(self, reason: str = "") -> dict[str, list[str | None]]:
        """production → previous (previous is cleared: what came before it is not known)."""

        def change(index: dict[str, Any]) -> dict[str, list[str | None]]:
            previous = index["aliases"]["previous"]
            if previous is None:
                raise RegistryError("cannot roll back: alias previous is not set")
            changes = self._apply_moves(index, {"production": previous, "previous": None}, None)
            self._record(index, "rollback", changes, reason)
            return changes

        return self._update(change)

    @staticmethod
    def _check_artifacts(artifact_dir: Path) -> dict[str, Any]:
        if not artifact_dir.is_dir():
            raise RegistryInputError(f"{artifact_dir} is not a directory of training artifacts")
        missing = [f for f in REQUIRED_FILES if not (artifact_dir / f).exists()]
        if missing:
            raise RegistryInputError(
                f"{artifact_dir} lacks {', '.join(missing)} (run `python -m training train` first)"
            )
        try:
            card = json.loads((artifact_dir / "card.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RegistryInputError(f"{artifact_dir / 'card.json'} is not valid JSON ({exc})") from None
        absent = missing_fields(card)
        if absent:
            raise RegistryInputError(f"{artifact_dir / 'card.json'} lacks fields {absent}")
        return card

    def _claim_version(self, index: dict[str, Any]) -> str:
        """The next free vN, claimed create-only. Existing directories count too: a writer that died before
        listing its version leaves an unlisted vN, and a number is never handed out twice while it exists."""
        unlisted = [n for n in self.store.list(VERSIONS) if n not in index["versions"]]
        known = [*index["versions"], *(n for n in unlisted if self.store.exists(f"{VERSIONS}/{n}"))]
        number = max([0, *(_version_number(v) for v in known)]) + 1
        deadline = time.monotonic() + self.contention_timeout_s
        while True:
            version = f"v{number}"
            try:
                self.store.create(f"{VERSIONS}/{version}/{CLAIM}", _dump({"by": _actor(), "at": utc_now()}))
                return version
            except Conflict:
                if time.monotonic() > deadline:
                    raise RegistryError(f"could not claim a version number in {self.root}") from None
                number += 1

    def register(
        self,
        artifact_dir: str | Path,
        gate: Gate | None = None,
        set_aliases: tuple[str, ...] | list[str] = (),
        reason: str = "",
    ) -> tuple[str, Any]:
        """Gate, claim the next vN, upload the files under it, then list it in index.json (and move
        `set_aliases` to it) in one index write. Returns (version, gate decision)."""
        artifact_dir = Path(artifact_dir)
        card = self._check_artifacts(artifact_dir)
        for alias in set_aliases:
            if alias not in ALIASES:
                raise RegistryInputError(f"unknown alias {alias!r}: aliases are {', '.join(ALIASES)}")
        index = self.index()
        decision = None
        if gate is not None:
            production_version = index["aliases"]["production"]
            production = None
            if production_version is not None:
                production = (
                    production_version,
                    self.model_bytes(production_version),
                    self.card(production_version),
                )
            decision = gate(
                (artifact_dir / "model.ts").read_bytes(),
                (artifact_dir / "test_split.npz").read_bytes(),
                card,
                production,
            )
            if not decision.passed:

                def refused(index: dict[str, Any]) -> None:
                    self._record(
                        index, "refused", {}, "; ".join(decision.reasons), config=card["config"]["name"]
                    )

                self._update(refused)
                raise GateRefused(decision)
        try:
            version = self._claim_version(index)
        except StoreError as exc:
            raise RegistryError(str(exc)) from None
        vdir = f"{VERSIONS}/{version}"
        card = {
            **card,
            "version": version,
            "registered": utc_now(),
            "gate": decision.to_dict() if decision else None,
        }
        try:
            for name in (*REQUIRED_FILES, *OPTIONAL_FILES):
                if name != "card.json" and (artifact_dir / name).exists():
                    self.store.put_file(artifact_dir / name, f"{vdir}/{name}")
            self.store.write(f"{vdir}/card.md", render_markdown(card).encode())
            self.store.write(f"{vdir}/card.json", _dump(card))
        except BaseException:
            self.store.remove_tree(vdir)
            raise
        m = card["metrics"]
        entry = {
            "created": card["created"],
            "registered": card["registered"],
            "config": card["config"]["name"],
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "auto_key_share": m["auto_key_share"],
            "data_sha256": card["data"]["sha256"],
            "test_split_sha256": card["data"].get("test_split_sha256"),
            "git_commit": card["git_commit"],
            "path": vdir,
        }

        def listed(index: dict[str, Any]) -> None:
            if version in index["versions"]:
                raise RegistryError(
                    f"{version} is already listed in {self.store.url(INDEX)}; versions are immutable"
                )
            index["versions"][version] = entry
            changes = self._apply_moves(index, dict.fromkeys(set_aliases, version), None)
            self._record(index, "register", changes, reason, version=version, config=card["config"]["name"])

        self._update(listed)
        return version, decision

    # ---- housekeeping ------------------------------------------------------------------------------
    def verify(self) -> list[str]:
        """Problems a reader would hit: aliases to unlisted versions, missing files, unlisted directories."""
        index = self.index()
        problems = []
        for alias, version in index["aliases"].items():
            if version is not None and version not in index["versions"]:
                problems.append(f"alias {alias} points at {version}, which is not registered")
        for version in index["versions"]:
            for name in (*REQUIRED_FILES, "card.md"):
                if not self.store.exists(f"{VERSIONS}/{version}/{name}"):
                    problems.append(f"{version} lacks {name}")
        for name in self.store.list(VERSIONS):
            # some S3 servers list a prefix for a while after its last object went; it holds nothing
            if name not in index["versions"] and self.store.exists(f"{VERSIONS}/{name}"):
                problems.append(
                    f"{VERSIONS}/{name} is not listed in index.json (an unfinished write, or a writer died; "
                    "`registry gc` removes it once it is older than --min-age)"
                )
        return problems

    def gc(self, min_age_seconds: float = 3600.0) -> list[str]:
        """Remove version directories that index.json does not list and whose claim is older than
        min_age_seconds (a live writer lists its version within that time), and dead writers' temporaries."""
        index = self.index()
        removed = self.store.sweep_temporaries()
        for name in self.store.list(VERSIONS):
            rel = f"{VERSIONS}/{name}"
            if name in index["versions"] or not self.store.exists(rel):
                continue
            claim = f"{rel}/{CLAIM}"
            age = self.store.age(claim) if self.store.exists(claim) else self.store.age(rel)
            if age >= min_age_seconds:
                self.store.remove_tree(rel)
                removed.append(name)
        return removed


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
