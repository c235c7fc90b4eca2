#!/usr/bin/env bash
# Prepares this machine to run Molecule's podman driver: Debian packages, a podman drop-in that works on
# cgroups-v1 hosts without CAP_SYS_RESOURCE, and locally built Debian 12 images (no registry is reachable).
# Idempotent: a second run only checks what is there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images_dir="$here/../tests/images"
base_image=localhost/chiops-debian:bookworm
systemd_image=localhost/chiops-debian-systemd:bookworm
suite=bookworm
mirror=${CHIOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf '[molecule-host] %s\n' "$*"; }

need_pkgs=()
for cmd in podman:podman runc:runc debootstrap:debootstrap; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || need_pkgs+=("${cmd##*:}")
done
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]} from Debian"
  if [ "$(id -u)" -ne 0 ]; then
    echo "molecule-host: need root to install ${need_pkgs[*]} (run as root or install them first)" >&2
    exit 1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}"
fi

# crun fails on cgroups v1 hybrid hosts and podman's default rlimits exceed what root may set here.
dropin=/etc/containers/containers.conf.d/50-chiops.conf
want_dropin='[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"'
if [ "$(cat "$dropin" 2>/dev/null)" != "$want_dropin" ]; then
  log "writing $dropin"
  mkdir -p "$(dirname "$dropin")"
  printf '%s\n' "$want_dropin" > "$dropin"
fi

exec 9>/tmp/chiops-molecule-host.lock
flock 9

if ! podman image exists "$base_image"; then
  log "building $base_image with debootstrap (about a minute)"
  root=$(mktemp -d /tmp/chiops-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >/tmp/chiops-debootstrap.log 2>&1 || {
    tail -20 /tmp/chiops-debootstrap.log >&2; exit 1; }
  cat > "$root/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SRC
  tar -C "$root" -c . | podman import --quiet - "$base_image" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

if ! podman image exists "$systemd_image"; then
  log "building $systemd_image"
  podman build --quiet --tag "$systemd_image" --file "$images_dir/Containerfile.systemd" "$images_dir" >/dev/null
fi
log "ready: $base_image, $systemd_image"
