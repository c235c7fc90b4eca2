"""The model registry (layout in docs/contracts.md): immutable versions v1, v2, … and aliases that move
atomically. Deliberately torch-free at import: the rollout calls its CLI many times; only the gate loads torch."""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from training.card import missing_fields, render_markdown, utc_now
from training.errors import BadInputError, TrainingError
from training.storage import open_store

ALIASES = ("staging", "canary", "production", "previous")
INDEX = "index.json"
VERSIONS = "versions"
REQUIRED_FILES = ("model.ts", "state_dict.pt", "card.json", "test_split.npz")
OPTIONAL_FILES = ("validation.json", "training_history.json")
VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
TMP_PREFIX = ".tmp-"
DEFAULT_ROOT = "registry"


class RegistryError(TrainingError):
    """A registry operation could not be done (exit 1)."""


class RegistryInputError(BadInputError):
    """Unknown alias or version, or an artifact directory that is not one (exit 2)."""


class GateRefused(RegistryError):
    def __init__(self, decision: Any) -> None:
        self.decision = decision
        super().__init__(
            "quality gate refused registration:\n" + "\n".join(f"  - {r}" for r in decision.reasons)
        )


class AliasConflict(RegistryError):
    """An expected alias value did not hold (someone else moved it first)."""


def empty_index() -> dict[str, Any]:
    return {"format": 1, "generation": 0, "versions": {}, "aliases": dict.fromkeys(ALIASES), "history": []}


def default_root() -> str:
    return os.environ.get("CHIOPS_REGISTRY", DEFAULT_ROOT)


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _version_number(name: str) -> int:
    match = VERSION_RE.match(name)
    return int(match.group(1)) if match else 0


class Registry:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = str(root if root is not None else default_root())
        self.store = open_store(self.root)

    # ---- reading -----------------------------------------------------------------------------------
    def index(self) -> dict[str, Any]:
        try:
            raw = self.store.read_bytes(INDEX)
        except FileNotFoundError:
            return empty_index()
        try:
            index = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RegistryError(
                f"{self.store.url(INDEX)} is not valid JSON ({exc}); restore it from a backup"
            ) from None
        index.setdefault("history", [])
        return index

    def resolve(self, ref: str, index: dict[str, Any] | None = None) -> str | None:
        """An alias → its version (None when unset); a version → itself if registered."""
        index = index or self.index()
        if ref in ALIASES:
            return index["aliases"].get(ref)
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

    def version_url(self, ref: str) -> str:
        return self.store.url(f"{VERSIONS}/{self.require(ref)}")

    def read_file(self, ref: str, name: str) -> bytes:
        return self.store.read_bytes(f"{VERSIONS}/{self.require(ref)}/{name}")

    def card(self, ref: str) -> dict[str, Any]:
        return json.loads(self.read_file(ref, "card.json"))

    def history(self) -> list[dict[str, Any]]:
        return self.index()["history"]

    # ---- writing -----------------------------------------------------------------------------------
    def _write_index(self, index: dict[str, Any]) -> None:
        index["generation"] = index.get("generation", 0) + 1
        self.store.write_atomic(INDEX, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode())

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

    def _record(
        self, index: dict[str, Any], event: str, changes: dict[str, Any], reason: str, **extra: Any
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
        """Move several aliases in one index write: either all move or none. `moves` values may be aliases
        or versions (resolved against the index as it was before this move); `expect` guards against a
        concurrent change (AliasConflict)."""
        with self.store.lock():
            index = self.index()
            resolved = {a: (self.resolve(v, index) if v is not None else None) for a, v in moves.items()}
            changes = self._apply_moves(index, resolved, expect)
            self._record(index, event, changes, reason)
            self._write_index(index)
            return changes

    def set_alias(
        self, alias: str, ref: str | None, expect: Mapping[str, str | None] | None = None, reason: str = ""
    ):
        return self.move_aliases({alias: ref}, expect, reason)

    def promote(self, ref: str, reason: str = "", expect_production: str | bool | None = False):
        """production → ref and previous → the old production, in one step; canary/staging that pointed at the
        promoted version are cleared (it left those stages)."""
        with self.store.lock():
            index = self.index()
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
            self._write_index(index)
            return changes

    def rollback(self, reason: str = "") -> dict[str, list[str | None]]:
        """production → previous (previous is cleared: what came before it is not known)."""
        with self.store.lock():
            index = self.index()
            previous = index["aliases"]["previous"]
            if previous is None:
                raise RegistryError("cannot roll back: alias previous is not set")
            changes = self._apply_moves(index, {"production": previous, "previous": None}, None)
            self._record(index, "rollback", changes, reason)
            self._write_index(index)
            return changes

    def _check_artifacts(self, artifact_dir: Path) -> dict[str, Any]:
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

    def _next_version(self, index: dict[str, Any]) -> str:
        # Directories count too: a writer killed between publishing a directory and writing the index leaves
        # an unlisted vN behind, and versions are never overwritten.
        known = [*index["versions"], *self.store.list_dir(VERSIONS)]
        return f"v{max([0, *(_version_number(v) for v in known)]) + 1}"

    def register(
        self,
        artifact_dir: str | Path,
        gate: Any = None,
        set_aliases: tuple[str, ...] | list[str] = (),
        reason: str = "",
    ) -> tuple[str, Any]:
        """Gate, copy under a temporary name, rename into place as the next vN, then list it in index.json
        (and move `set_aliases` to it) in the same index write. Returns (version, gate decision)."""
        artifact_dir = Path(artifact_dir)
        card = self._check_artifacts(artifact_dir)
        for alias in set_aliases:
            if alias not in ALIASES:
                raise RegistryInputError(f"unknown alias {alias!r}: aliases are {', '.join(ALIASES)}")
        tmp = f"{VERSIONS}/{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with self.store.lock():
            index = self.index()
            decision = None
            if gate is not None:
                from training.gate import decide

                production_version = index["aliases"]["production"]
                production = None
                if production_version is not None:
                    production = (
                        production_version,
                        self.read_file(production_version, "model.ts"),
                        self.card(production_version),
                    )
                decision = decide(
                    gate,
                    (artifact_dir / "model.ts").read_bytes(),
                    (artifact_dir / "test_split.npz").read_bytes(),
                    card,
                    production,
                )
                if not decision.passed:
                    self._record(
                        index, "refused", {}, "; ".join(decision.reasons), config=card["config"]["name"]
                    )
                    self._write_index(index)
                    raise GateRefused(decision)
            version = self._next_version(index)
            try:
                self.store.makedirs(tmp)
                for name in (*REQUIRED_FILES, *OPTIONAL_FILES):
                    if name != "card.json" and (artifact_dir / name).exists():
                        self.store.put_file(artifact_dir / name, f"{tmp}/{name}")
                card = {
                    **card,
                    "version": version,
                    "registered": utc_now(),
                    "gate": decision.to_dict() if decision else None,
                }
                self.store.write_bytes(
                    f"{tmp}/card.json", (json.dumps(card, indent=2, sort_keys=True) + "\n").encode()
                )
                self.store.write_bytes(f"{tmp}/card.md", render_markdown(card).encode())
                self.store.publish_dir(tmp, f"{VERSIONS}/{version}")
            except BaseException:
                self.store.remove_tree(tmp)
                raise
            m = card["metrics"]
            index["versions"][version] = {
                "created": card["created"],
                "registered": card["registered"],
                "config": card["config"]["name"],
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "auto_key_share": m["auto_key_share"],
                "data_sha256": card["data"]["sha256"],
                "test_split_sha256": card["data"].get("test_split_sha256"),
                "git_commit": card["git_commit"],
                "path": f"{VERSIONS}/{version}",
            }
            changes = self._apply_moves(index, dict.fromkeys(set_aliases, version), None)
            self._record(index, "register", changes, reason, version=version, config=card["config"]["name"])
            self._write_index(index)
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
        for name in self.store.list_dir(VERSIONS):
            if name.startswith(TMP_PREFIX):
                problems.append(
                    f"unfinished write {VERSIONS}/{name} (a writer died; `registry gc` removes it)"
                )
            elif name not in index["versions"]:
                problems.append(
                    f"{VERSIONS}/{name} is not listed in index.json (a writer died before listing it)"
                )
        return problems

    def gc(self, min_age_seconds: float = 3600.0) -> list[str]:
        """Remove unfinished version directories. On a local root a writer holds the lock for the whole life of
        its temporary directory, so any found while holding the lock belongs to a dead writer; on object
        storage (no lock) only those older than min_age_seconds are removed."""
        removed = []
        with self.store.lock():
            if self.store.atomic:
                for name in self.store.list_dir(""):
                    if name.startswith(f".{INDEX}.tmp-"):
                        self.store.remove_tree(name)
                        removed.append(name)
            for name in self.store.list_dir(VERSIONS):
                if not name.startswith(TMP_PREFIX):
                    continue
                rel = f"{VERSIONS}/{name}"
                if self.store.atomic or time.time() - self.store.mtime(rel) > min_age_seconds:
                    self.store.remove_tree(rel)
                    removed.append(name)
        return removed
