"""reserve / status / extend / release / inventory: the operations behind the CLI and the notebooks.

reserve keeps a ledger of what it creates; when any step fails it deletes exactly that (servers, then
floating-IP attachments and the lease's addresses, then the lease) unless asked to keep it.
"""

from __future__ import annotations

from pathlib import Path

from chi_scripts import floating_ips, hosts_file
from chi_scripts import lease as leases
from chi_scripts import servers as nova
from chi_scripts.auth import connect
from chi_scripts.errors import CloudError, SpecError
from chi_scripts.metrics import write_lease_metric
from chi_scripts.progress import say, wait_for
from chi_scripts.spec import SPEC_FILE, Spec, Target, load_target, parse_duration
from chi_scripts.ssh_wait import probe, wait_ssh
from chi_scripts.state import read_state, remove_state, write_state


def _all_names(spec: Spec) -> list[str]:
    return [n for g in spec.nodes for n in g.server_names(spec.lease_name)]


def _host_records(spec: Spec, mapping: dict, current: dict) -> list[dict]:
    hosts = []
    for group in spec.nodes:
        for name in group.server_names(spec.lease_name):
            server = current.get(name)
            if server is None:
                raise CloudError(f"server {name} does not exist (run reserve)")
            fixed, fip = nova.addresses(server)
            hosts.append(
                {
                    "name": name,
                    "node_group": group.name,
                    "node_type": group.node_type,
                    "groups": list(group.groups),
                    "reservation_id": mapping[group.name],
                    "server_id": server.id,
                    "status": server.status,
                    "fixed_ip": fixed,
                    "floating_ip": fip,
                }
            )
    return hosts


def _wait_gone(spec: Spec, ids: set[str], label: str):
    if not ids:
        return

    def poll():
        left = ids & {s.id for s in nova.list_servers()}
        return not left, f"{len(left)} server(s) still deleting", None

    wait_for(label, poll, spec.timeouts["delete"], min(spec.poll_interval, 5.0))


def _find_lease(spec: Spec, statuses=leases.LIVE) -> dict | None:
    """The state file's lease if it is still there, else the one live lease of that name."""
    state = read_state(spec.inventory_dir)
    lease_id = (state.get("lease") or {}).get("id")
    if lease_id:
        found = leases.get_lease(lease_id)
        if found and found["status"] in statuses and found["name"] == spec.lease_name:
            return found
    matches = leases.find_leases(spec.lease_name, statuses)
    if len(matches) > 1:
        ids = ", ".join(m["id"] for m in matches)
        raise CloudError(f"{len(matches)} leases are named {spec.lease_name} ({ids}); release the extra ones")
    return matches[0] if matches else None


def _write_inventories(target: Target, lease: dict, hosts: list[dict]) -> list[Path]:
    return [hosts_file.write(d, target.spec, lease, hosts) for d in target.inventory_dirs]


class _Reserve:
    def __init__(self, target: Target):
        self.target = target
        self.spec = target.spec
        self.created_lease: dict | None = None
        self.lease: dict | None = None
        self.launched: set[str] = set()
        self.attached: list[dict] = []
        self.pre_server_ids: set[str] = set()
        self.previous_state = read_state(self.spec.inventory_dir)

    def _save(self, complete: bool, hosts: list[dict] | None = None):
        spec = self.spec
        write_state(
            spec.inventory_dir,
            {
                "environment": spec.environment,
                "complete": complete,
                "lease": {"name": spec.lease_name, "id": self.lease["id"] if self.lease else None},
                "servers_created_by_last_run": sorted(self.launched),
                "hosts": hosts or [],
            },
        )

    def run(self) -> dict:
        spec = self.spec
        images = {g.image: nova.lookup_image(g.image) for g in spec.nodes}
        keypair = nova.lookup_keypair(spec.key_name, spec.path)
        self.pre_server_ids = {s.id for s in nova.list_servers()}

        broken = leases.find_leases(spec.lease_name, ("ERROR",))
        if broken:
            raise CloudError(
                f"lease {spec.lease_name} ({broken[0]['id']}) is in ERROR; release it before reserving again"
            )
        existing = _find_lease(spec)
        if existing:
            say(f"Using existing lease {spec.lease_name} ({existing['id']}, {existing['status']})")
            self.lease = existing
        else:
            say(f"Creating lease {spec.lease_name} for {spec.duration}")
            self.lease = self.created_lease = leases.create_lease(spec)
            self._save(complete=False)
        self.lease = leases.wait_active(spec, self.lease)
        mapping = leases.match_reservations(spec, self.lease)
        fips = floating_ips.wait_reserved(spec, self.lease) if spec.floating_ip_count else []

        current = self._launch_and_wait(mapping, images, keypair)
        self._attach(current, fips)
        current = nova.by_name(nova.list_servers(), _all_names(spec))
        hosts = _host_records(spec, mapping, current)

        targets = {h["name"]: h["floating_ip"] for h in hosts if h["floating_ip"]}
        if spec.ssh_check == "all":
            targets |= {h["name"]: h["fixed_ip"] for h in hosts if not h["floating_ip"]}
        wait_ssh(targets, spec.ssh_port, spec.timeouts["ssh"], spec.poll_interval)

        paths = _write_inventories(self.target, self.lease, hosts)
        self._save(complete=True, hosts=hosts)
        say(
            f"Ready: {len(hosts)} host(s) in lease {spec.lease_name}; inventory: {', '.join(map(str, paths))}"
        )
        return {"lease": _lease_summary(self.lease), "hosts": hosts, "inventories": [str(p) for p in paths]}

    def _launch_and_wait(self, mapping: dict, images: dict, keypair) -> dict:
        spec = self.spec
        wanted = {n: g for g in spec.nodes for n in g.server_names(spec.lease_name)}
        current = nova.by_name(nova.list_servers(), wanted)
        for name, server in current.items():
            if server.status == "ERROR":
                raise CloudError(
                    f"server {name} ({server.id}) already exists in ERROR ({nova.fault_message(server)}); "
                    "release before reserving again"
                )

        def launch(name):
            group = wanted[name]
            nova.launch(name, mapping[group.name], images[group.image], keypair, spec.network)
            self.launched.add(name)
            self._save(complete=False)

        missing = [n for n in wanted if n not in current]
        if missing:
            say(f"Launching {len(missing)} server(s): {', '.join(missing)}")
        for name in missing:
            launch(name)
        replaced = dict.fromkeys(wanted, 0)

        def poll():
            found = nova.by_name(nova.list_servers(), wanted)
            states = []
            for name in wanted:
                server = found.get(name)
                status = server.status if server else "MISSING"
                if status == "ERROR":
                    reason = nova.fault_message(server)
                    if server.id in self.pre_server_ids or replaced[name] >= spec.server_retries:
                        tries = f" (after {replaced[name]} replacement(s))" if replaced[name] else ""
                        raise CloudError(f"server {name} went to ERROR{tries}: {reason}")
                    replaced[name] += 1
                    say(
                        f"  server {name} went to ERROR ({reason}); "
                        f"replacing it ({replaced[name]}/{spec.server_retries})"
                    )
                    nova.delete(server.id)
                    _wait_gone(spec, {server.id}, f"deletion of {name}")
                    launch(name)
                    status = "REPLACING"
                states.append(f"{name.removeprefix(spec.lease_name + '-')} {status}")
            done = all(s.endswith(" ACTIVE") for s in states)
            return done, ", ".join(states), found

        return wait_for("servers", poll, spec.timeouts["server"], spec.poll_interval)

    def _attach(self, current: dict, fips: list[dict]):
        spec = self.spec
        reserved = {f["floating_ip_address"]: f for f in fips}
        in_use = set()
        pending = []
        for group in spec.nodes:
            if not group.floating_ip:
                continue
            for name in group.server_names(spec.lease_name):
                _, fip = nova.addresses(current[name])
                if fip:
                    in_use.add(fip)
                else:
                    pending.append(name)
        free = [f for f in fips if f["port_id"] is None and f["floating_ip_address"] not in in_use]
        for name in pending:
            if not free:
                raise CloudError(
                    f"no free floating IP left in lease {spec.lease_name} for {name} "
                    f"(reserved: {', '.join(reserved) or 'none'})"
                )
            fip = free.pop(0)
            floating_ips.associate(current[name].id, fip["floating_ip_address"])
            self.attached.append(fip)
            say(f"  attached floating IP {fip['floating_ip_address']} to {name}")

    def rollback(self, reason: Exception):
        spec = self.spec
        say(f"Reserve failed ({reason}); deleting what this run created")
        problems = []
        try:
            ours = {
                s.id: s.name
                for s in nova.list_servers()
                if s.name in self.launched and s.id not in self.pre_server_ids
            }
            for sid, name in ours.items():
                say(f"  deleting server {name}")
                nova.delete(sid)
            _wait_gone(spec, set(ours), "server deletion")
        except Exception as e:
            problems.append(f"servers: {e}")
        try:
            if self.created_lease:
                for fip in floating_ips.reserved_fips(self.created_lease):
                    floating_ips.release(fip)
            else:
                for fip in self.attached:
                    floating_ips.detach(fip)
        except Exception as e:
            problems.append(f"floating IPs: {e}")
        try:
            if self.created_lease:
                say(f"  deleting lease {spec.lease_name} ({self.created_lease['id']})")
                leases.delete(self.created_lease)
        except Exception as e:
            problems.append(f"lease: {e}")
        if problems:
            self._save(complete=False)
            say("  cleanup incomplete, run release: " + "; ".join(problems))
        elif self.created_lease:
            remove_state(spec.inventory_dir)
        elif self.previous_state:
            write_state(spec.inventory_dir, self.previous_state)

    def keep(self):
        if self.lease:
            self._save(complete=False)
        say(
            f"--keep-on-failure: kept lease {self.lease['id'] if self.lease else '-'} and server(s) "
            f"{', '.join(sorted(self.launched)) or '-'}; `release` deletes them"
        )


def _lease_summary(lease: dict) -> dict:
    return {k: lease.get(k) for k in ("id", "name", "status", "start_date", "end_date")}


def reserve(inventory, keep_on_failure: bool = False) -> dict:
    """Find or create the lease, launch and check the servers, attach floating IPs, wait for SSH,
    write hosts.yml and the state file. Re-running changes nothing when everything exists."""
    target = load_target(inventory)
    where = connect(target.spec)
    say(f"Reserve {target.spec.lease_name} ({', '.join(d.name for d in target.inventory_dirs)}) at {where}")
    job = _Reserve(target)
    try:
        return job.run()
    except BaseException as e:
        if keep_on_failure:
            job.keep()
        else:
            job.rollback(e if isinstance(e, Exception) else CloudError("interrupted"))
        raise


def status(inventory, metrics_file=None) -> dict:
    """Lease state and time left (warning under an hour), servers, addresses and SSH reachability."""
    target = load_target(inventory)
    spec = target.spec
    connect(spec)
    env = Path(inventory).name
    lease = _find_lease(spec, leases.RELEASABLE)
    if lease is None:
        say(f"No lease named {spec.lease_name}")
        if metrics_file:
            write_lease_metric(metrics_file, [env], spec.lease_name, None)
        return {"lease": None, "hosts": []}
    left = leases.seconds_left(lease)
    hours, rem = divmod(max(0, int(left)), 3600)
    say(
        f"Lease {spec.lease_name} ({lease['id']}): {lease['status']}, "
        f"ends {lease['end_date'][:16].replace('T', ' ')} UTC, {hours}h{rem // 60:02d}m left"
    )
    if lease["status"] == "ACTIVE" and left < 3600:
        say(f"WARNING: lease {spec.lease_name} ends in under an hour - `extend --by 1d` to keep it")
    current = nova.by_name(nova.list_servers(), _all_names(spec))
    hosts = []
    for group in spec.nodes:
        for name in group.server_names(spec.lease_name):
            server = current.get(name)
            fixed, fip = nova.addresses(server) if server else (None, None)
            addr = fip or (fixed if spec.ssh_check == "all" else None)
            if server is None:
                ssh = "-"
            elif addr:
                ok, detail = probe(addr, spec.ssh_port, timeout=2.0)
                ssh = "ok" if ok else f"no ({detail})"
            else:
                ssh = "via jump host"
            hosts.append(
                {
                    "name": name,
                    "status": server.status if server else "MISSING",
                    "fixed_ip": fixed,
                    "floating_ip": fip,
                    "ssh": ssh,
                }
            )
            say(
                f"  {name:<40} {hosts[-1]['status']:<8} fixed {fixed or '-':<15} "
                f"floating {fip or '-':<15} ssh {ssh}"
            )
    if metrics_file:
        write_lease_metric(metrics_file, [env], spec.lease_name, leases.end_timestamp(lease))
    return {"lease": _lease_summary(lease), "seconds_left": left, "hosts": hosts}


def _blazar_delta(by: str) -> str:
    seconds = parse_duration(by, "--by")
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise SpecError(f"--by: {by!r} is not a whole number of minutes")


def extend(inventory, by: str) -> dict:
    """Prolong the lease with Blazar; Chameleon's refusal is shown as it was sent."""
    target = load_target(inventory)
    delta = _blazar_delta(by)
    connect(target.spec)
    lease = _find_lease(target.spec)
    if lease is None:
        raise CloudError(f"no live lease named {target.spec.lease_name} to extend")
    updated = leases.extend(lease, delta)
    say(
        f"Lease {lease['name']} extended by {delta}: "
        f"now ends {updated['end_date'][:16].replace('T', ' ')} UTC"
    )
    return _lease_summary(updated)


def _sharing_dirs(spec: Spec) -> list[Path]:
    """Inventories that borrow this spec's lease (their hosts.yml lists the same hosts)."""
    import yaml

    dirs = []
    for path in sorted(spec.inventory_dir.parent.glob(f"*/{SPEC_FILE}")):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("shared_with") == spec.environment:
            dirs.append(path.parent)
    return dirs


def release(inventory) -> dict:
    """Delete servers, then floating IPs, then the lease. Safe to repeat and after a partial reserve."""
    target = load_target(inventory)
    if target.shared_from:
        raise SpecError(
            f"{Path(inventory) / SPEC_FILE}: shared_with {target.shared_from} - "
            f"this environment borrows that lease; release inventories/{target.shared_from} instead"
        )
    spec = target.spec
    connect(spec)
    state = read_state(spec.inventory_dir)
    found = {lease["id"]: lease for lease in leases.find_leases(spec.lease_name, leases.RELEASABLE)}
    state_lease = (state.get("lease") or {}).get("id")
    if state_lease and state_lease not in found:
        lease = leases.get_lease(state_lease)
        if lease and lease["status"] in leases.RELEASABLE:
            found[lease["id"]] = lease
    names = set(_all_names(spec)) | set(state.get("servers_created_by_last_run", []))
    doomed = {s.id: s.name for s in nova.list_servers() if s.name in names}
    for sid, name in doomed.items():
        say(f"Deleting server {name}")
        nova.delete(sid)
    _wait_gone(spec, set(doomed), "server deletion")
    fips = [f for lease in found.values() for f in floating_ips.reserved_fips(lease)]
    for fip in fips:
        say(f"Releasing floating IP {fip['floating_ip_address']}")
        floating_ips.release(fip)
    for lease in found.values():
        say(f"Deleting lease {lease['name']} ({lease['id']}, {lease['status']})")
        leases.delete(lease)
    remove_state(spec.inventory_dir)
    for d in [spec.inventory_dir, *_sharing_dirs(spec)]:
        hosts_file.remove_generated(d)
    if not (doomed or fips or found):
        say(f"Nothing to release for {spec.lease_name}")
    return {
        "servers": sorted(doomed.values()),
        "floating_ips": [f["floating_ip_address"] for f in fips],
        "leases": sorted(found),
    }


def inventory(inventory) -> dict:
    """Rewrite hosts.yml from the live lease and servers (no waiting, nothing created)."""
    target = load_target(inventory)
    spec = target.spec
    connect(spec)
    lease = _find_lease(spec)
    if lease is None or lease["status"] != "ACTIVE":
        raise CloudError(f"no ACTIVE lease named {spec.lease_name} (run reserve)")
    mapping = leases.match_reservations(spec, lease)
    current = nova.by_name(nova.list_servers(), _all_names(spec))
    hosts = _host_records(spec, mapping, current)
    paths = _write_inventories(target, lease, hosts)
    say(f"Wrote {', '.join(map(str, paths))}")
    return {"lease": _lease_summary(lease), "hosts": hosts, "inventories": [str(p) for p in paths]}
