"""A real Kubernetes API server for the tests: etcd + kube-apiserver v1.20.2 on 127.0.0.1.

kube-apiserver is built from Debian's source package by tools/kube-apiserver.sh (cached); etcd is Debian's.
Everything listens on loopback ports picked at start, with a CA made here (openssl), TLS, client-certificate
authentication and RBAC. No controller-manager, scheduler or kubelet runs: objects are stored, validated,
defaulted, watched and authorized as on a real cluster, but nothing acts on them (no pods, no garbage
collection, namespaces stay Terminating when deleted).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tools" / "kube-apiserver.sh"
# Only for data: no route, bridge or pod uses it (podman's 10.88.0.0/16 is avoided).
SERVICE_CIDR = "10.233.0.0/24"
READY_TIMEOUT_S = 180


class KubeAPIError(Exception):
    pass


def build() -> Path:
    """The directory with kube-apiserver and kubectl (built on first use, then verified from the cache)."""
    result = subprocess.run(
        ["nice", "-n", "10", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True, check=False
    )
    if result.returncode != 0:
        raise KubeAPIError(f"{BUILD_SCRIPT} failed (exit {result.returncode}); its reason is above")
    return Path(result.stdout.strip().splitlines()[-1])


def run_play(
    kube_api, playbook: Path, name: str, task: dict, extra: dict, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Write a one-task play on localhost to `playbook` and run it with ansible-playbook against `kube_api`
    (this project's ansible.cfg, the venv's Python as the interpreter)."""
    play = [
        {"name": name, "hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": [task]}
    ]
    playbook.write_text(yaml.safe_dump(play))
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            json.dumps({**extra, "ansible_python_interpreter": sys.executable}),
        ],
        cwd=ROOT,
        env={**kube_api.env(), "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KubeAPIError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _issue(pki: Path, name: str, subject: str, extensions: str) -> None:
    """A key and a certificate for <name> signed by the test CA in <pki>."""
    (pki / f"{name}.ext").write_text(extensions)
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-subj",
        subject,
        "-out",
        f"{name}.csr",
        cwd=pki,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.key").chmod(0o600)


def make_pki(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=chiops-test-ca",
        cwd=pki,
    )
    _issue(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    # Service-account tokens: kube-apiserver 1.20 requires a signing key and an issuer.
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig(server: str, pki: Path, user: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "chiops-test",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "chiops-test", "context": {"cluster": "chiops-test", "user": user}}],
        "current-context": "chiops-test",
    }


@dataclass
class KubeAPI:
    """A running test API server. `kubeconfig` authenticates as an admin (group system:masters)."""

    server: str
    kubeconfig: Path
    bin_dir: Path
    workdir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (ansible-playbook, kubectl) that should talk to this server."""
        env = dict(os.environ)
        env.update(KUBECONFIG=str(self.kubeconfig), K8S_AUTH_KUBECONFIG=str(self.kubeconfig))
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubeAPIError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def user_kubeconfig(self, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig for a user with no rights but what RBAC objects grant it (client certificate)."""
        pki = self.workdir / "pki"
        subject = f"/CN={user}" + "".join(f"/O={g}" for g in groups)
        _issue(pki, user, subject, "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
        path = self.workdir / f"{user}.kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig(self.server, pki, user)))
        path.chmod(0o600)
        return path

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Stops both servers by PID (API server first) and removes etcd's data."""
        for name in ("kube-apiserver", "etcd"):
            proc = self.processes.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(self.workdir / "etcd-data", ignore_errors=True)


def _spawn(api: KubeAPI, name: str, argv: list[str]) -> None:
    log = (api.workdir / f"{name}.log").open("wb")
    api.processes[name] = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log.close()


def _ready(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait(api: KubeAPI, what: str, probe, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Polls probe() until true, printing progress; fails early with the log when a process died."""
    start = last_report = time.monotonic()
    while not probe():
        for name, proc in api.processes.items():
            if proc.poll() is not None:
                raise KubeAPIError(
                    f"{name} exited with {proc.returncode} while waiting for {what}:\n{api.log_tail(name)}"
                )
        now = time.monotonic()
        if now - start > timeout_s:
            raise KubeAPIError(f"{what} not ready after {timeout_s:.0f} s:\n{api.log_tail('kube-apiserver')}")
        if now - last_report >= 5:
            print(f"[kube-api] waiting for {what} ({now - start:.0f} s)", file=sys.stderr, flush=True)
            last_report = now
        time.sleep(0.25)


def start(workdir: Path, bin_dir: Path | None = None) -> KubeAPI:
    """Starts etcd and kube-apiserver in <workdir>; the caller stops them with .stop()."""
    bin_dir = bin_dir or build()
    etcd = shutil.which("etcd")
    if etcd is None:
        raise KubeAPIError("etcd not found (tools/kube-apiserver.sh installs Debian's etcd-server)")
    pki = workdir / "pki"
    make_pki(pki)
    _issue(
        pki,
        "admin",
        "/CN=chiops-admin/O=system:masters",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    server = f"https://127.0.0.1:{api_port}"
    config = workdir / "admin.kubeconfig"
    config.write_text(yaml.safe_dump(kubeconfig(server, pki, "admin")))
    config.chmod(0o600)
    api = KubeAPI(server=server, kubeconfig=config, bin_dir=bin_dir, workdir=workdir)
    etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
    try:
        _spawn(
            api,
            "etcd",
            [
                etcd,
                "--name",
                "chiops-test",
                "--data-dir",
                str(workdir / "etcd-data"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"chiops-test={peer_url}",
                "--log-level",
                "warn",
            ],
        )
        _wait(api, "etcd", lambda: _ready(f"{etcd_url}/health", ssl.create_default_context()))
        _spawn(
            api,
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cert-dir={workdir / 'certs'}",
                "--profiling=false",
                "--v=1",
            ],
        )
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        _wait(api, "kube-apiserver", lambda: _ready(f"{server}/readyz", context))
    except BaseException:
        api.stop()
        raise
    return api
