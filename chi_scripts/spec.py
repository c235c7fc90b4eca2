"""Loading and validating inventories/<env>/chameleon.yml.

Every problem is a SpecError that names the file and the key, so a typo never reaches Chameleon.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from chi_scripts.errors import SpecError

SPEC_FILE = "chameleon.yml"
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_SECONDS = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)?$")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

TOP_KEYS = {
    "site",
    "lease_name",
    "duration",
    "image",
    "key_name",
    "ssh_user",
    "ssh_port",
    "network",
    "nodes",
    "timeouts",
    "poll_interval",
    "server_retries",
    "ssh_check",
    "shared_with",
}
REQUIRED_TOP = ("lease_name", "duration", "image", "key_name", "nodes")
NODE_KEYS = {"name", "node_type", "count", "groups", "floating_ip", "image"}
TIMEOUT_KEYS = {"lease", "server", "ssh", "delete"}
# Chameleon's bare-metal deployments take 10-20 minutes; these leave room for a slow day.
DEFAULT_TIMEOUTS = {"lease": 900.0, "server": 2400.0, "ssh": 900.0, "delete": 900.0}
DEFAULT_POLL_INTERVAL = 15.0


@dataclasses.dataclass(frozen=True)
class NodeGroup:
    name: str
    node_type: str
    count: int
    groups: tuple[str, ...]
    floating_ip: bool
    image: str

    def server_names(self, lease_name: str) -> list[str]:
        return [f"{lease_name}-{self.name}-{i}" for i in range(1, self.count + 1)]


@dataclasses.dataclass(frozen=True)
class Spec:
    environment: str
    path: Path
    site: str | None
    lease_name: str
    duration: str
    duration_seconds: int
    image: str
    key_name: str
    ssh_user: str
    ssh_port: int
    network: str
    nodes: tuple[NodeGroup, ...]
    timeouts: dict
    poll_interval: float
    server_retries: int
    ssh_check: str

    @property
    def inventory_dir(self) -> Path:
        return self.path.parent

    @property
    def floating_ip_count(self) -> int:
        return sum(g.count for g in self.nodes if g.floating_ip)


@dataclasses.dataclass(frozen=True)
class Target:
    """What a command acts on: the spec that owns the lease, and every inventory that lists its hosts."""

    spec: Spec
    inventory_dirs: tuple[Path, ...]
    shared_from: str | None = None  # set when the requested environment borrows another's lease


def parse_duration(text, where: str) -> int:
    """'8h', '1d', '90m', '1d12h' -> seconds (the lease length units Blazar users think in)."""
    m = _DURATION.match(str(text).strip()) if isinstance(text, str) else None
    if not m or not any(m.groups()):
        raise SpecError(f"{where}: {text!r} is not a duration (use m/h/d, e.g. 8h, 1d, 90m)")
    d, h, mins = (int(x or 0) for x in m.groups())
    seconds = d * 86400 + h * 3600 + mins * 60
    if seconds <= 0:
        raise SpecError(f"{where}: duration must be longer than zero")
    return seconds


def parse_seconds(value, where: str) -> float:
    if isinstance(value, bool):
        raise SpecError(f"{where}: {value!r} is not a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _SECONDS.match(str(value).strip())
        if not m:
            raise SpecError(f"{where}: {value!r} is not a time (seconds, or with s/m/h/d)")
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    if seconds <= 0:
        raise SpecError(f"{where}: must be positive")
    return seconds


def _expect(cond: bool, where: str, msg: str):
    if not cond:
        raise SpecError(f"{where}: {msg}")


def _read(path: Path) -> dict:
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    _expect(isinstance(data, dict), str(path), "must be a mapping of keys")
    return data


def _node(raw, where: str, default_image: str) -> NodeGroup:
    _expect(isinstance(raw, dict), where, "each node group must be a mapping")
    unknown = sorted(set(raw) - NODE_KEYS)
    _expect(
        not unknown, f"{where}.{unknown[0] if unknown else ''}", f"unknown key (allowed: {sorted(NODE_KEYS)})"
    )
    for key in ("name", "node_type"):
        _expect(key in raw, f"{where}.{key}", "missing (required)")
    name, node_type = raw["name"], raw["node_type"]
    _expect(
        isinstance(name, str) and bool(_NAME.match(name)), f"{where}.name", f"{name!r}: use a-z, 0-9 and -"
    )
    _expect(
        isinstance(node_type, str) and bool(re.match(r"^[a-z0-9_]+$", node_type)),
        f"{where}.node_type",
        f"{node_type!r} is not a Chameleon node type (e.g. compute_cascadelake_r, gpu_mi100)",
    )
    count = raw.get("count", 1)
    _expect(
        isinstance(count, int) and not isinstance(count, bool) and count >= 1,
        f"{where}.count",
        "must be >= 1",
    )
    groups = raw.get("groups", [])
    _expect(
        isinstance(groups, list)
        and all(isinstance(g, str) and re.match(r"^[a-z_][a-z0-9_]*$", g) for g in groups),
        f"{where}.groups",
        "must be a list of Ansible group names",
    )
    fip = raw.get("floating_ip", False)
    _expect(isinstance(fip, bool), f"{where}.floating_ip", "must be true or false")
    image = raw.get("image", default_image)
    _expect(isinstance(image, str) and bool(image), f"{where}.image", "must be an image name")
    return NodeGroup(name, node_type, count, tuple(groups), fip, image)


def load_spec(path: Path) -> Spec:
    path = Path(path)
    data = _read(path)
    env = path.parent.name
    unknown = sorted(set(data) - TOP_KEYS)
    _expect(
        not unknown, f"{path}: {unknown[0] if unknown else ''}", f"unknown key (allowed: {sorted(TOP_KEYS)})"
    )
    if "shared_with" in data:
        raise SpecError(f"{path}: shared_with: this spec borrows another environment's lease")
    for key in REQUIRED_TOP:
        _expect(key in data, f"{path}: {key}", "missing (required)")
    for key in ("lease_name", "image", "key_name"):
        _expect(
            isinstance(data[key], str) and data[key].strip() != "",
            f"{path}: {key}",
            "must be a non-empty string",
        )
    _expect(bool(_NAME.match(data["lease_name"])), f"{path}: lease_name", "use a-z, 0-9 and -")
    seconds = parse_duration(data["duration"], f"{path}: duration")
    site = data.get("site")
    _expect(site is None or isinstance(site, str), f"{path}: site", "must be a site name such as CHI@TACC")
    ssh_user = data.get("ssh_user", "cc")
    _expect(isinstance(ssh_user, str) and bool(ssh_user), f"{path}: ssh_user", "must be a user name")
    ssh_port = data.get("ssh_port", 22)
    _expect(
        isinstance(ssh_port, int) and not isinstance(ssh_port, bool) and 0 < ssh_port < 65536,
        f"{path}: ssh_port",
        "must be a TCP port",
    )
    network = data.get("network", "sharednet1")
    _expect(isinstance(network, str) and bool(network), f"{path}: network", "must be a network name")
    nodes_raw = data["nodes"]
    _expect(
        isinstance(nodes_raw, list) and nodes_raw, f"{path}: nodes", "must be a non-empty list of node groups"
    )
    nodes = tuple(_node(n, f"{path}: nodes[{i}]", data["image"]) for i, n in enumerate(nodes_raw))
    names = [n.name for n in nodes]
    dup = sorted({n for n in names if names.count(n) > 1})
    _expect(not dup, f"{path}: nodes", f"duplicate node group name {dup[0] if dup else ''!r}")
    _expect(
        any(n.floating_ip for n in nodes),
        f"{path}: nodes",
        "at least one node group needs floating_ip: true (the others are reached through it)",
    )
    timeouts = dict(DEFAULT_TIMEOUTS)
    raw_t = data.get("timeouts", {})
    _expect(isinstance(raw_t, dict), f"{path}: timeouts", "must be a mapping")
    for k, v in raw_t.items():
        _expect(k in TIMEOUT_KEYS, f"{path}: timeouts.{k}", f"unknown key (allowed: {sorted(TIMEOUT_KEYS)})")
        timeouts[k] = parse_seconds(v, f"{path}: timeouts.{k}")
    poll = parse_seconds(data.get("poll_interval", DEFAULT_POLL_INTERVAL), f"{path}: poll_interval")
    retries = data.get("server_retries", 2)
    _expect(
        isinstance(retries, int) and not isinstance(retries, bool) and 0 <= retries <= 10,
        f"{path}: server_retries",
        "must be an integer 0..10",
    )
    ssh_check = data.get("ssh_check", "floating")
    _expect(ssh_check in ("floating", "all"), f"{path}: ssh_check", "must be 'floating' or 'all'")
    return Spec(
        environment=env,
        path=path,
        site=site,
        lease_name=data["lease_name"],
        duration=data["duration"],
        duration_seconds=seconds,
        image=data["image"],
        key_name=data["key_name"],
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        network=network,
        nodes=nodes,
        timeouts=timeouts,
        poll_interval=poll,
        server_retries=retries,
        ssh_check=ssh_check,
    )


def load_target(inventory_dir) -> Target:
    """Resolve --inventory to the spec owning the lease (following shared_with once)."""
    inv = Path(inventory_dir)
    path = inv / SPEC_FILE
    data = _read(path)
    if "shared_with" not in data:
        return Target(load_spec(path), (inv,))
    extra = sorted(set(data) - {"shared_with"})
    _expect(
        not extra, f"{path}: {extra[0] if extra else ''}", "a spec with shared_with may contain nothing else"
    )
    owner = data["shared_with"]
    _expect(
        isinstance(owner, str) and bool(_NAME.match(owner)),
        f"{path}: shared_with",
        "must be an environment name",
    )
    _expect(owner != inv.name, f"{path}: shared_with", "an environment cannot share its own lease")
    owner_path = inv.parent / owner / SPEC_FILE
    if not owner_path.is_file():
        raise SpecError(f"{path}: shared_with: {owner!r} has no {owner_path}")
    owner_data = _read(owner_path)
    _expect(
        "shared_with" not in owner_data,
        f"{path}: shared_with",
        f"{owner!r} itself borrows a lease (no chains)",
    )
    return Target(load_spec(owner_path), (inv.parent / owner, inv), shared_from=owner)
