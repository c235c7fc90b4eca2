#!/usr/bin/env bash
# Prepares this machine to run Molecule's podman driver: Debian packages, a podman drop-in that works on
# cgroups-v1 hosts without CAP_SYS_RESOURCE, and locally built Debian 12 images (no registry is reachable).
# Idempotent: a second run only checks what is there. Each step checks its own result and stops with the reason;
# "ready" is printed only when both images exist and the systemd image has systemd and Python in it. Needs root
# (apt-get, /etc/containers, rootful podman): on a hosted CI runner run it through sudo.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images_dir="$here/../tests/images"
base_image=localhost/chiops-debian:bookworm
# CHIOPS_SYSTEMD_IMAGE: another tag, for the test that interrupts a build (tests/tools).
systemd_image=${CHIOPS_SYSTEMD_IMAGE:-localhost/chiops-debian-systemd:bookworm}
suite=bookworm
mirror=${CHIOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { printf '[molecule-host] %s\n' "$*"; }
fail() { printf 'molecule-host: %s\n' "$*" >&2; exit 1; }
step="checking the host"
# The image a build step is creating: an interrupted run removes it, since a build whose layers were all cached
# can tag the image before the signal reaches podman, and the next run would then take it as checked.
building=""
interrupted() {
  [ -z "$building" ] || podman image rm --force "$building" >/dev/null 2>&1 || true
  fail "interrupted while $step; nothing after it is ready"
}
# podman build can exit 0 when it is interrupted: a signal stops this script with the step it was in.
trap interrupted TERM INT HUP

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
  step="installing ${need_pkgs[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}"
  for cmd in podman runc debootstrap; do
    command -v "$cmd" >/dev/null 2>&1 || fail "$cmd is still missing after apt-get install"
  done
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
  step="writing $dropin"
  log "writing $dropin"
  mkdir -p "$(dirname "$dropin")"
  printf '%s\n' "$want_dropin" > "$dropin"
fi

exec 9>/tmp/chiops-molecule-host.lock
if ! flock -n 9; then
  log "waiting for another molecule-host run to finish (lock /tmp/chiops-molecule-host.lock)"
  flock 9
fi

if ! podman image exists "$base_image"; then
  step="building $base_image"
  log "building $base_image with debootstrap (about a minute)"
  root=$(mktemp -d /tmp/chiops-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >/tmp/chiops-debootstrap.log 2>&1 || {
    tail -20 /tmp/chiops-debootstrap.log >&2; fail "debootstrap failed (log: /tmp/chiops-debootstrap.log)"; }
  [ -x "$root/bin/sh" ] && [ -f "$root/etc/debian_version" ] || fail "debootstrap left no usable root in $root"
  cat > "$root/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SRC
  tar -C "$root" -c . | podman import --quiet - "$base_image" >/dev/null
  rm -rf "$root"
  trap - EXIT
  podman image exists "$base_image" || fail "podman import did not create $base_image"
fi

if ! podman image exists "$systemd_image"; then
  step="building $systemd_image"
  log "building $systemd_image (about 20 s)"
  building=$systemd_image
  podman build --quiet --force-rm --tag "$systemd_image" \
    --file "$images_dir/Containerfile.systemd" "$images_dir" >/dev/null \
    || fail "podman build of $systemd_image failed"
  podman image exists "$systemd_image" || fail "podman build exited 0 but $systemd_image does not exist"
  building=""
fi
# roles/trainer's scenario installs torch's CPU wheel from a host directory: this machine's, else one downloaded
# once from PyTorch's CPU index into the cache (a hosted CI runner). molecule-all.sh passes the directories on.
torch_pin=$(python3 "$here/pyproject_deps.py" "$here/../pyproject.toml" runtime | grep -E '^torch==' || true)
if [ -n "$torch_pin" ] && ! compgen -G "${CHIOPS_WHEELS_DIR:-/opt/wheels}/torch-${torch_pin#torch==}*.whl" >/dev/null; then
  wheels=${XDG_CACHE_HOME:-$HOME/.cache}/chiops/wheels
  if ! compgen -G "$wheels/torch-${torch_pin#torch==}*.whl" >/dev/null; then
    step="downloading $torch_pin (CPU) into $wheels"
    log "$step"
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --index-url "${CHIOPS_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}" -d "$wheels" "$torch_pin" \
      || fail "could not download $torch_pin for roles/trainer's scenario (set CHIOPS_WHEELS_DIR)"
    compgen -G "$wheels/torch-${torch_pin#torch==}*.whl" >/dev/null || fail "no $torch_pin wheel in $wheels"
  fi
fi

step="checking $systemd_image"
podman run --rm --network none --entrypoint /bin/sh "$systemd_image" -c \
  'test -x /sbin/init && test -x /lib/systemd/systemd && python3 -c "import apt"' \
  || fail "$systemd_image lacks systemd or python3-apt: remove it (podman rmi $systemd_image) and run again"
log "ready: $base_image, $systemd_image"
