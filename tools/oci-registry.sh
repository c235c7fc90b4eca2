#!/usr/bin/env bash
# Prints the path of the OCI registry binary the image tests push to: Debian's docker-registry (distribution
# 2.8), downloaded with apt and unpacked into the cache, not installed: installing would start a system service
# listening on every interface. Cached on its version; the binary is checked before it is called ready.
set -euo pipefail
version=2.8.2+ds1-1
cache=${CHIOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chiops}
dir="$cache/docker-registry-$version"
bin="$dir/usr/bin/docker-registry"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/docker-registry.lock"
flock 9
if ! [ -x "$bin" ]; then
  tmp=$(mktemp -d "$cache/docker-registry.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "[oci-registry] downloading Debian's docker-registry $version" >&2
  (cd "$tmp" && apt-get download -q "docker-registry=$version" >&2) || {
    echo "oci-registry: apt-get download docker-registry=$version failed (run apt-get update first?)" >&2
    exit 1
  }
  dpkg-deb -x "$tmp"/docker-registry_*.deb "$tmp/root"
  "$tmp/root/usr/bin/docker-registry" --version >/dev/null
  rm -rf "$dir"
  mv "$tmp/root" "$dir"
fi
"$bin" --version >/dev/null || { echo "oci-registry: $bin does not run" >&2; exit 1; }
echo "$bin"
