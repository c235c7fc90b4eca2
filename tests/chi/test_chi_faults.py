"""Fault injection at every step of reserve: exit 1, the real reason, nothing left that the run created,
and nothing that existed before touched."""

from __future__ import annotations

import pytest

import chi_scripts
from chi_scripts import cli

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]


def _teammate(fake):
    """Someone else's lease, server and loose floating IP in the same project."""
    other = fake.add_lease("team-other", nodes={"compute_cascadelake_r": 1}, fips=1)
    fake.add_server("team-other-node", reservation_id=other["reservations"][0]["id"])
    fake.add_project_fip()


FAULTS = {
    "capacity refused": (
        lambda c: c.hosts.update(gpu_mi100=0),
        {},
        "Not enough hosts available",
    ),
    "lease goes to ERROR": (lambda c: setattr(c, "lease_goes_error", True), {}, "went to ERROR"),
    "lease never starts": (
        lambda c: setattr(c, "lease_start_delay", 60),
        {"timeouts": {"lease": 0.5, "server": 5, "ssh": 1, "delete": 5}},
        "timed out after 0:00:00 waiting for lease chiops-test (last state: PENDING)",
    ),
    "no floating IP in the lease": (
        lambda c: setattr(c, "fip_shortfall", 1),
        {},
        "has 0 reserved floating IP(s) but the spec needs 1",
    ),
    "server ERROR every boot": (
        lambda c: setattr(c, "server_error_boots", 10),
        {},
        "No valid host was found. There are not enough hosts available.",
    ),
    "server never boots": (
        lambda c: setattr(c, "server_boot_delay", 60),
        {"timeouts": {"lease": 5, "server": 0.6, "ssh": 1, "delete": 5}},
        "waiting for servers (last state: control-1 BUILD, gpu-1 BUILD)",
    ),
    "SSH port closed": (lambda c: setattr(c, "ssh_mode", "closed"), {}, "waiting for SSH"),
    "SSH without banner": (lambda c: setattr(c, "ssh_mode", "silent"), {}, "no SSH banner"),
    "missing keypair": (lambda c: setattr(c, "keypairs", ()), {}, "Nova keypair 'chiops' does not exist"),
    "missing image": (
        lambda c: None,
        {"image": "CC-Ubuntu99.04"},
        'No images found matching name "CC-Ubuntu99.04"',
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_rolls_back_everything_it_created(fake, make_inventory, capsys, fault):
    inject, spec_overrides, reason = FAULTS[fault]
    _teammate(fake)
    before = fake.snapshot()
    inject(fake.config)
    inv = make_inventory(**spec_overrides)
    assert cli.main(["reserve", "--inventory", str(inv)]) == 1
    captured = capsys.readouterr()
    assert reason in captured.err, captured.err
    assert fake.snapshot() == before
    assert not (inv / "hosts.yml").exists() and not (inv / ".chiops-state.json").exists()


def test_failure_on_existing_lease_keeps_what_existed(fake, make_inventory, capsys):
    """A re-run that fails must not delete the lease, servers or addresses of the earlier run."""
    inv = make_inventory()
    chi_scripts.reserve(inv)
    gpu = next(s for s in fake.servers.values() if s["name"].endswith("gpu-1"))
    with fake.lock:
        fake._drop_server(gpu["id"])  # the GPU node vanished (e.g. deleted in the GUI)
    before = fake.snapshot()
    fake.config.server_error_boots = 10
    assert cli.main(["reserve", "--inventory", str(inv)]) == 1
    assert "No valid host was found" in capsys.readouterr().err
    assert fake.snapshot() == before
    control = next(s for s in fake.servers.values() if s["name"].endswith("control-1"))
    assert any(f["port_id"] == control["_port"] for f in fake.fips.values())
    fake.config.server_error_boots = 0
    assert cli.main(["reserve", "--inventory", str(inv)]) == 0
    assert len(fake.servers) == 2


def test_keep_on_failure_then_release(fake, make_inventory, capsys):
    _teammate(fake)
    before = fake.snapshot()
    fake.config.ssh_mode = "closed"
    inv = make_inventory()
    assert cli.main(["reserve", "--inventory", str(inv), "--keep-on-failure"]) == 1
    assert "--keep-on-failure: kept lease" in capsys.readouterr().out
    kept = fake.snapshot()
    assert len(kept["servers"] - before["servers"]) == 2 and len(kept["leases"] - before["leases"]) == 1
    assert (inv / ".chiops-state.json").exists()
    assert cli.main(["release", "--inventory", str(inv)]) == 0
    assert fake.snapshot() == before
    assert cli.main(["release", "--inventory", str(inv)]) == 0
