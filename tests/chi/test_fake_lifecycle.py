"""The fake behaves like Blazar and Nova where chi_scripts depends on it, seen through the real clients:
lease states on the fake's clock, a lease's end taking its servers and addresses, duplicate names."""

from __future__ import annotations

import pytest

import chi_scripts
from chi_scripts import cli

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]


def test_lease_states_and_its_end_deletes_servers_and_addresses(fake, make_inventory, capsys):
    fake.config.lease_starting_time = 0.3  # long enough for the 0.05 s polls to see STARTING
    inv = make_inventory(duration="2h")
    chi_scripts.reserve(inv)
    out = capsys.readouterr().out
    assert "[lease chiops-test] PENDING" in out and "[lease chiops-test] STARTING" in out
    (lease,) = fake.leases.values()
    assert [e["status"] for e in lease["events"]] == ["DONE", "UNDONE"]
    assert {r["status"] for r in lease["reservations"]} == {"active"}
    assert len(fake.servers) == 2 and len(fake.fips) == 1

    fake.config.server_delete_delay = 600  # deletion takes the fake's clock, not the test's wall time
    fake.advance(2 * 3600)  # the end date passes with nobody calling anything
    assert lease["status"] == "TERMINATING"
    assert all(s["_deleted_at"] is not None for s in fake.servers.values()) and not fake.fips
    assert chi_scripts.status(inv)["lease"]["status"] == "TERMINATING"

    fake.advance(fake.config.server_delete_delay)
    assert lease["status"] == "TERMINATED" and not fake.servers
    assert {r["status"] for r in lease["reservations"]} == {"deleted"}
    assert chi_scripts.status(inv)["lease"] is None  # a TERMINATED lease is history, not this environment's


def test_duplicate_lease_names_are_accepted_as_blazar_does(fake, make_inventory, capsys):
    import chi

    inv = make_inventory()
    chi_scripts.status(inv)  # authenticates python-chi against the fake
    made = [
        chi.blazar().lease.create(
            name="chiops-test", start="now", end="2099-01-01 00:00", reservations=[], events=[]
        )
        for _ in range(2)
    ]
    assert made[0]["id"] != made[1]["id"] and [x["name"] for x in made] == ["chiops-test"] * 2
    fake.advance(1)
    assert cli.main(["reserve", "--inventory", str(inv)]) == 1
    err = capsys.readouterr().err
    assert f"2 leases are named chiops-test ({made[0]['id']}, {made[1]['id']})" in err
    assert not fake.servers


def test_capacity_refusal_is_blazars_error(fake, make_inventory):
    import chi
    from blazarclient.exception import BlazarClientException

    chi_scripts.status(make_inventory())
    fake.config.hosts["gpu_mi100"] = 0
    reservation = {
        "resource_type": "physical:host",
        "resource_properties": '["==", "$node_type", "gpu_mi100"]',
        "min": 1,
        "max": 1,
        "hypervisor_properties": "",
    }
    with pytest.raises(BlazarClientException) as refused:
        chi.blazar().lease.create(
            name="x", start="now", end="2099-01-01 00:00", reservations=[reservation], events=[]
        )
    assert "Not enough hosts available" in str(refused.value)
    assert refused.value.code == 500
