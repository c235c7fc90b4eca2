"""A rollout's persisted state (state.json), the controller lock, and requests to a running controller.

state.json is rewritten atomically (write beside, fsync, rename) after every transition, so a SIGKILLed
controller leaves the last transition it made, never half a file. One controller drives a rollout: it holds an
exclusive flock on `controller.lock` for as long as it runs (the kernel drops it when the process dies, so a
killed controller never leaves a stale lock). Other verbs (pause, promote, abort) reach a live controller
through `control.json`, which it polls while it waits.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

ACTIVE = ("running", "paused", "rolling_back")
TERMINAL = ("promoted", "staged", "rolled_back")
REQUESTS = ("pause", "resume", "promote", "promote_full", "abort")


class Busy(Exception):
    """Another controller holds the lock of this rollout directory."""


class Store:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.state_path = self.dir / "state.json"
        self.control_path = self.dir / "control.json"
        self.lock_path = self.dir / "controller.lock"
        self.ledger_path = self.dir / "ledger.jsonl"
        self._lock_fd: int | None = None

    # ---- state ---------------------------------------------------------------------------------------
    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None

    def save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        state["updated"] = round(time.time(), 3)
        tmp = self.state_path.with_name(f".state.json.{os.getpid()}")
        with open(tmp, "w") as handle:
            handle.write(json.dumps(state, indent=2, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.state_path)
        directory = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)

    # ---- lock ----------------------------------------------------------------------------------------
    def acquire(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.lock_path.read_text().strip() or "another process"
            raise Busy(f"a controller ({holder}) is driving the rollout in {self.dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def controller_alive(self) -> bool:
        """True when some process (not this one) holds the controller lock."""
        if self._lock_fd is not None:
            return True
        if not self.lock_path.exists():
            return False
        fd = os.open(self.lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a lock we may have taken
        return False

    # ---- requests to the controller -----------------------------------------------------------------
    def request(self, what: str, actor: str) -> None:
        if what not in REQUESTS:
            raise ValueError(f"unknown request {what!r}")
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.control_path.with_name(f".control.json.{os.getpid()}")
        tmp.write_text(json.dumps({"request": what, "actor": actor, "at": time.time()}) + "\n")
        tmp.replace(self.control_path)

    def take_request(self) -> dict[str, Any] | None:
        """The pending request, removed so it is acted on once."""
        taken = self.control_path.with_name(f".control.taken.{os.getpid()}")
        try:
            self.control_path.replace(taken)
        except FileNotFoundError:
            return None
        try:
            return json.loads(taken.read_text())
        except json.JSONDecodeError:
            return None
        finally:
            taken.unlink(missing_ok=True)
