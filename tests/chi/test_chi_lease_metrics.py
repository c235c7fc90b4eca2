"""The lease-end refresher as it runs on its own: `status --metrics-file F --every D`, a separate process
against the fake, picks up an extension and the lease's release with no further command. (That the alert
fires from an unchanging end timestamp as time passes is proven by promtool in
tests/rollout/test_monitoring.py.)"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import chi_scripts
from chi_scripts.metrics import LEASE_END

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

REPO = Path(__file__).resolve().parents[2]


def _sample(path: Path) -> float | None:
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith(f'{LEASE_END}{{environment="staging",lease="chiops-test"}} '):
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait(path: Path, want, what: str, proc) -> float | None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = _sample(path)
        if want(value):
            return value
        assert proc.poll() is None, f"the refresher exited ({proc.returncode}): {proc.stderr.read()}"
        time.sleep(0.1)
    raise AssertionError(f"the refresher never wrote {what} (last: {_sample(path)})")


def test_refresher_follows_extension_and_release(fake, make_inventory, tmp_path):
    inv = make_inventory()
    lease_end = chi_scripts.reserve(inv)["lease"]["end_date"]
    end = dt.datetime.strptime(lease_end, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC).timestamp()
    metrics = tmp_path / "textfile" / "chiops_lease_staging.prom"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chi_scripts", "status", "--inventory", str(inv),
         "--metrics-file", str(metrics), "--every", "0.2"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _wait(metrics, lambda v: v is not None, "the lease end", proc) == end
        assert f"# TYPE {LEASE_END} gauge" in metrics.read_text()
        chi_scripts.extend(inv, "1d")  # Blazar's end moves; nobody reruns status
        assert _wait(metrics, lambda v: v == end + 86400, "the extended end", proc) == end + 86400
        written = metrics.stat().st_mtime_ns
        _wait(metrics, lambda v: metrics.stat().st_mtime_ns != written, "another round", proc)
        chi_scripts.release(inv)
        _wait(metrics, lambda v: v is None, "the release (no sample)", proc)
        assert proc.poll() is None  # a round without a lease is not a failure
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_refresher_needs_a_metrics_file(fake, make_inventory):
    out = subprocess.run(
        [sys.executable, "-m", "chi_scripts", "status", "--inventory", str(make_inventory()),
         "--every", "5m"],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2 and "--every needs --metrics-file" in out.stderr
    assert fake.request_total() == 0


def test_timer_role_writes_units_whose_command_exports_the_lease(fake, make_inventory, tmp_path):
    """playbooks/lease_metrics.yml on this machine (systemd is not running here, so the timer is written and
    verified, not started); then the service's ExecStart, run exactly as written with its EnvironmentFile."""
    inv = make_inventory()
    chi_scripts.reserve(inv)
    units, textfile = tmp_path / "units", tmp_path / "textfile"
    units.mkdir()
    credentials = tmp_path / "openstack.env"
    credentials.write_text("".join(f"{k}={v}\n" for k, v in fake.env().items()))
    credentials.chmod(0o600)
    bindir = Path(sys.executable).parent
    play = subprocess.run(
        [bindir / "ansible-playbook", "-i", inv, REPO / "playbooks" / "lease_metrics.yml",
         "-e", f"lease_metrics_unit_dir={units} lease_metrics_textfile_dir={textfile}",
         "-e", f"lease_metrics_credentials_file={credentials} "
               "lease_metrics_manage_service=false ansible_become=false"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path),
             "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(tmp_path / ".ansible")},
    )  # fmt: skip
    assert play.returncode == 0, play.stdout + play.stderr
    service, timer = (
        units / "chiops-lease-metrics-staging.service",
        units / "chiops-lease-metrics-staging.timer",
    )
    verify = subprocess.run(["systemd-analyze", "verify", service, timer], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OnUnitActiveSec=5min" in timer.read_text()
    fields = dict(line.split("=", 1) for line in service.read_text().splitlines() if "=" in line)
    assert fields["EnvironmentFile"] == str(credentials) and "LEAKCHECK" not in service.read_text()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        fields["Environment"].split("=", 1)[0]: fields["Environment"].split("=", 1)[1],
    }
    env |= dict(line.split("=", 1) for line in credentials.read_text().splitlines())
    ran = subprocess.run(
        fields["ExecStart"].split(),
        cwd=fields["WorkingDirectory"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert _sample(textfile / "chiops_lease_staging.prom") is not None
