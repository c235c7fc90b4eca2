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

    status = cli("status", "--inventory", inv, "--metrics-file", metrics)
    outputs += [status.stdout, status.stderr]
    assert status.returncode == 0, status.stderr
    assert "ssh ok" in status.stdout
    assert 'chiops_lease_seconds_left{environment="staging",lease="chiops-test"}' in metrics.read_text()

    extend = cli("extend", "--inventory", inv, "--by", "1d")
    assert extend.returncode == 0 and "extended by 1d" in extend.stdout
    generated = [(inv / "hosts.yml").read_text(), (inv / ".chiops-state.json").read_text(), metrics.read_text()]

    release = cli("release", "--inventory", inv)
    outputs += [release.stdout, release.stderr, extend.stdout, extend.stderr]
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
