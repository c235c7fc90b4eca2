"""The CLI as a user runs it (a subprocess), with recognisable credentials grepped from every output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_chameleon.testing import SECRET_PASSWORD, assert_no_secret

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "chi_scripts", *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_reserve_status_release(fake, make_inventory, tmp_path):
    assert os.environ["OS_PASSWORD"] == SECRET_PASSWORD
    inv = make_inventory()
    metrics = tmp_path / "lease.prom"
    outputs = []

    reserve = cli("reserve", "--inventory", inv)
    outputs += [reserve.stdout, reserve.stderr]
    assert reserve.returncode == 0, reserve.stderr
    assert "Ready: 2 host(s)" in reserve.stdout
    assert reserve.stderr == ""  # no stevedore/neutronclient noise (python-chi trap 12)

    status = cli("status", "--inventory", inv, "--metrics-file", metrics)
    outputs += [status.stdout, status.stderr]
    assert status.returncode == 0, status.stderr
    assert "ssh ok" in status.stdout
    assert (
        'chiops_lease_end_timestamp_seconds{environment="staging",lease="chiops-test"}' in metrics.read_text()
    )

    generated = [
        (inv / "hosts.yml").read_text(),
        (inv / ".chiops-state.json").read_text(),
        metrics.read_text(),
    ]

    release = cli("release", "--inventory", inv)
    outputs += [release.stdout, release.stderr]
    assert release.returncode == 0, release.stderr
    assert fake.snapshot() == {"leases": set(), "servers": set(), "fips": set()}
    assert_no_secret(*outputs, *generated)
    # The password did reach Keystone (so the grep above was looking for something real).
    assert any(SECRET_PASSWORD in body for body in fake.bodies)
    assert not any(SECRET_PASSWORD in body for body in fake.bodies if '"auth"' not in body)


def test_cli_capacity_failure_exit_1_with_reason(fake, make_inventory):
    fake.config.hosts["gpu_mi100"] = 0
    result = cli("reserve", "--inventory", make_inventory())
    assert result.returncode == 1
    assert "Not enough hosts available" in result.stderr
    assert fake.snapshot() == {"leases": set(), "servers": set(), "fips": set()}


def test_cli_bad_spec_exit_2(fake, make_inventory):
    inv = make_inventory(duration="forever")
    result = cli("reserve", "--inventory", inv)
    assert result.returncode == 2
    assert "duration" in result.stderr and str(inv / "chameleon.yml") in result.stderr
    assert fake.request_total() == 0


def test_cli_help():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("reserve", "status", "extend", "release", "inventory"):
        assert command in result.stdout


def test_cli_site_lookup_without_os_auth_url(fake, make_inventory, monkeypatch):
    """Without OS_AUTH_URL the spec's `site` goes through python-chi's site lookup (sites.json ->
    <web>:5000/v3). python-chi reads CHI_RESOURCE_API_URL at import, hence a fresh process."""
    try:
        fake.start_site_endpoint("127.0.83.1")
    except OSError as e:
        pytest.skip(f"cannot listen on 127.0.83.1:5000 here: {e}")
    monkeypatch.delenv("OS_AUTH_URL")
    monkeypatch.delenv("OS_REGION_NAME")
    monkeypatch.setenv("CHI_RESOURCE_API_URL", fake.base)
    inv = make_inventory(site="CHI@TACC")
    result = cli("status", "--inventory", inv)
    assert result.returncode == 0, result.stderr
    assert "No lease named chiops-test" in result.stdout
    assert fake.requests[("GET", "/sites.json")] == 1
    assert fake.requests[("POST", "/v3/auth/tokens")] >= 1
    # A site python-chi's list does not know is a cloud-side failure with the reason.
    result = cli("status", "--inventory", make_inventory(site="CHI@NOWHERE"))
    assert result.returncode == 1 and "CHI@NOWHERE" in result.stderr
