"""The firewall role's address filters (they decide whether a ruleset would cut Ansible's SSH session)."""

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "roles" / "firewall" / "filter_plugins" / "firewall_filters.py"
spec = importlib.util.spec_from_file_location("firewall_filters", PLUGIN)
filters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(filters)


@pytest.mark.parametrize(
    ("address", "cidrs", "inside"),
    [
        ("198.51.100.7", ["0.0.0.0/0"], True),
        ("198.51.100.7", ["198.51.100.0/24"], True),
        ("198.51.100.7", ["198.51.101.0/24", "10.0.0.0/8"], False),
        ("198.51.100.7", ["::/0"], False),  # an IPv6 rule does not admit an IPv4 client
        ("::ffff:198.51.100.7", ["198.51.100.7/32"], True),  # sshd may report IPv4 clients mapped
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("10.233.70.4", ["10.233.64.0/18"], True),
        ("10.233.128.1", ["10.233.64.0/18", "10.233.0.0/18"], False),
    ],
)
def test_address_in(address, cidrs, inside):
    assert filters.firewall_address_in(address, cidrs) is inside


def test_split_family_normalises_and_separates():
    mixed = ["10.0.0.5", "10.0.0.0/8", "2001:db8::1", "192.168.1.7/24", "10.0.0.5"]
    assert filters.firewall_split_family(mixed, 4) == ["10.0.0.0/8", "10.0.0.5/32", "192.168.1.0/24"]
    assert filters.firewall_split_family(mixed, 6) == ["2001:db8::1/128"]
    # sshd can report an IPv4 client as an IPv4-mapped IPv6 address: it belongs in the IPv4 set
    assert filters.firewall_split_family(["::ffff:198.51.100.7"], 4) == ["198.51.100.7/32"]
    assert filters.firewall_split_family(["::ffff:198.51.100.7"], 6) == []


def test_invalid_and_everywhere():
    assert filters.firewall_invalid_cidrs(["10.0.0.0/8", "example.org", "300.1.1.1", "::/0"]) == [
        "example.org",
        "300.1.1.1",
    ]
    assert filters.firewall_is_everywhere(["0.0.0.0/0", "10.0.0.0/8", "::/0"]) == ["0.0.0.0/0", "::/0"]
