"""Address checks the firewall role needs on the controller, with the standard library only."""

import ipaddress


def firewall_split_family(cidrs, family):
    """The entries of `cidrs` that are IPv4 (family 4) or IPv6 (family 6), normalised to networks."""
    wanted = int(family)
    out = []
    for cidr in cidrs:
        net = ipaddress.ip_network(str(cidr).strip(), strict=False)
        if net.version == 6 and net.prefixlen == 128 and net.network_address.ipv4_mapped:
            net = ipaddress.ip_network(net.network_address.ipv4_mapped)
        if net.version == wanted:
            out.append(str(net))
    return sorted(set(out), key=lambda n: (ipaddress.ip_network(n).network_address, n))


def firewall_invalid_cidrs(cidrs):
    """The entries of `cidrs` that are not an IP address or network."""
    bad = []
    for cidr in cidrs:
        try:
            ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            bad.append(cidr)
    return bad


def firewall_address_in(address, cidrs):
    """True when `address` lies in any of `cidrs` (IPv4-mapped IPv6 addresses count as IPv4)."""
    addr = ipaddress.ip_address(str(address).strip())
    if addr.version == 6 and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    for cidr in cidrs:
        net = ipaddress.ip_network(str(cidr).strip(), strict=False)
        if net.version == addr.version and addr in net:
            return True
    return False


def firewall_is_everywhere(cidrs):
    """The entries of `cidrs` that are a default route (/0), i.e. the whole internet."""
    return [c for c in cidrs if ipaddress.ip_network(str(c).strip(), strict=False).prefixlen == 0]


class FilterModule:
    def filters(self):
        return {
            "firewall_split_family": firewall_split_family,
            "firewall_invalid_cidrs": firewall_invalid_cidrs,
            "firewall_address_in": firewall_address_in,
            "firewall_is_everywhere": firewall_is_everywhere,
        }
