"""The promotion history: an append-only JSONL file, each entry hash-chained to the one before it.

Every alias move, weight change and deploy the engine makes is one entry: time, actor, rollout, event, what
changed, the reason, the gate evidence that justified it, and the git commit (gitops backend). `verify`
recomputes the chain; an edited, removed or reordered entry breaks it at the first bad line.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


class LedgerTampered(Exception):
    """The chain does not verify; the message names the first bad entry."""


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return os.environ.get("CHIOPS_ACTOR") or f"{user}@{socket.gethostname()}"


def _digest(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) + f"{t % 1:.3f}"[1:]


class Ledger:
    def __init__(self, path: Path, clock=time.time) -> None:
        self.path = Path(path)
        self.clock = clock

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def verify(self) -> list[dict[str, Any]]:
        """All entries, or LedgerTampered naming the first entry whose content or link is wrong."""
        if not self.path.exists():
            return []
        entries, prev = [], GENESIS
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                raise LedgerTampered(f"{self.path}: line {number} is not JSON") from None
            if entry.get("seq") != len(entries) + 1:
                raise LedgerTampered(
                    f"{self.path}: line {number} has seq {entry.get('seq')}, expected {len(entries) + 1} "
                    "(an entry was removed or reordered)"
                )
            if entry.get("prev") != prev:
                raise LedgerTampered(
                    f"{self.path}: entry {entry['seq']} (line {number}) does not link to the entry before it"
                )
            if _digest(entry) != entry.get("hash"):
                raise LedgerTampered(
                    f"{self.path}: entry {entry['seq']} (line {number}) was modified: its hash does not match"
                )
            entries.append(entry)
            prev = entry["hash"]
        return entries

    def append(
        self,
        event: str,
        rollout_id: str | None,
        changes: dict[str, Any],
        reason: str,
        evidence: Any = None,
        commit: str | None = None,
    ) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # two writers never take the same seq
            handle.seek(0)
            lines = [line for line in handle.read().splitlines() if line.strip()]
            last = json.loads(lines[-1]) if lines else None
            now = self.clock()
            entry = {
                "seq": (last["seq"] + 1) if last else 1,
                "time": _iso(now),
                "unix": round(now, 3),
                "actor": actor(),
                "rollout": rollout_id,
                "event": event,
                "changes": changes,
                "reason": reason,
                "evidence": evidence,
                "commit": commit,
                "prev": last["hash"] if last else GENESIS,
            }
            entry["hash"] = _digest(entry)
            handle.seek(0, os.SEEK_END)
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry


def production_at(entries: list[dict[str, Any]], at: float) -> str | None:
    """The version that served production at unix time `at`, from the production moves in the ledger."""
    serving = None
    for entry in entries:
        if entry["unix"] > at:
            break
        moved = entry.get("changes", {}).get("production")
        if entry["event"] == "alias" and moved:
            serving = moved[1]
    return serving


def production_versions(entries: list[dict[str, Any]]) -> list[str]:
    """Every version the ledger shows serving production: before a production move (old) or after it (new)."""
    seen: list[str] = []
    for entry in entries:
        moved = entry.get("changes", {}).get("production")
        if entry["event"] == "alias" and moved:
            seen += [v for v in moved if v and v not in seen]
    return seen
