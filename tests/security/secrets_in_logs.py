"""A run's logs never hold its secrets: the token-signing key, the Ray auth token, OpenStack's secret.

`make demo`'s test calls `assert_no_secret_in_logs(run_dir, output, openstack_secret)` after a full run.
"""

from __future__ import annotations

import base64
from pathlib import Path

# Files that ARE the secrets (0600, never logged) are not logs; Prometheus' TSDB holds only metric samples.
SECRET_FILES = ("token.key", "ray_auth_token")
NOT_LOGS = ("prometheus/data",)


def run_secrets(run_dir: Path) -> dict[str, str]:
    """The secrets a local run created, by name (those that exist)."""
    out = {}
    for name in SECRET_FILES:
        path = run_dir / name
        if path.is_file():
            out[name] = path.read_text().strip()
    return out


def forms(secret: str) -> list[bytes]:
    """The secret as it could show up in a log: verbatim, and base64-encoded (HTTP basic auth, JSON blobs)."""
    raw = secret.encode()
    return [raw, base64.b64encode(raw).rstrip(b"=")]


def secret_occurrences(roots: list[Path], output: str, secrets: dict[str, str]) -> list[str]:
    """Where each secret appears: '<name> in <file>' or '<name> in the command output'."""
    found = []
    wanted = {name: forms(value) for name, value in secrets.items() if len(value) >= 8}
    for name, patterns in wanted.items():
        if any(p.decode() in output for p in patterns):
            found.append(f"{name} in the command output")
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            rel = path.relative_to(root).as_posix()
            if path.name in SECRET_FILES or any(rel.startswith(skip) for skip in NOT_LOGS):
                continue
            data = path.read_bytes()
            for name, patterns in wanted.items():
                if any(p in data for p in patterns):
                    found.append(f"{name} in {path}")
    return found


def assert_no_secret_in_logs(
    run_dir: Path, output: str, openstack_secret: str | None = None, extra_roots: tuple[Path, ...] = ()
) -> None:
    """Fails naming every file (or the output) that holds the run's token key, Ray token or OpenStack secret.

    run_dir is the inventory's chiops_run_dir (runs/local): its logs/, the demo's reports, the Serve config;
    extra_roots adds e.g. Ray's session directory (local_ray_temp_dir). openstack_secret is the value the
    caller put in OS_APPLICATION_CREDENTIAL_SECRET for the run.
    """
    secrets = run_secrets(run_dir)
    assert set(secrets) == set(SECRET_FILES), (
        f"the run left no {set(SECRET_FILES) - set(secrets)} in {run_dir}"
    )
    if openstack_secret:
        secrets["OS_APPLICATION_CREDENTIAL_SECRET"] = openstack_secret
    leaks = secret_occurrences([run_dir, *extra_roots], output, secrets)
    assert not leaks, "secrets in logs: " + "; ".join(leaks)
