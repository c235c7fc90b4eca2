"""A throwaway PostgreSQL server on 127.0.0.1 from Debian's package (tools/servers-host.sh installs it)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no PostgreSQL {name}: run tools/servers-host.sh (Debian's postgresql)")
    return found[-1]


class PostgresServer:
    """initdb into a fresh directory, start on a free port, stop by the postmaster's PID."""

    user = "chiops"
    database = "postgres"

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="chiops-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.pid: int | None = None
        # initdb and postgres refuse to run as root; Debian's package creates the postgres user
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as, *cmd], check=True, capture_output=True, timeout=120)

    def init(self) -> PostgresServer:
        self._run(_bin("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> PostgresServer:
        self._run(
            _bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off",
            "start",
        )
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def stop(self) -> None:
        """SIGINT to our postmaster (PostgreSQL's fast shutdown), then wait for it to be gone."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)
        # it removes postmaster.pid last on shutdown (its PID may linger as a zombie nobody reaps here)
        deadline = time.monotonic() + 60
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if (self.data / "postmaster.pid").exists():
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
