#!/usr/bin/env bash
# Builds kube-apiserver and kubectl from Debian bookworm's own source package (no registry reachable from here
# ships them) and caches them under ~/.cache/chiops/kube-<version>/. The tests start them with Debian's etcd.
# Prints the cache directory on its last line. A second run only verifies the cache (sha256 of each binary).
#
# Why each step: ../docs/cluster.md ("A real API server in the tests").
set -euo pipefail

version=1.20.5+really1.20.2-1.1+deb12u1
bins=(kube-apiserver kubectl)
cache=${CHIOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chiops}
dest=$cache/kube-$version
stamp=$dest/.ready

log() { printf '[kube-apiserver] %s\n' "$*" >&2; }
die() { printf 'kube-apiserver.sh: %s\n' "$*" >&2; exit 1; }

# The stamp is the sha256 list of the binaries, written only after they ran: a half-built or edited cache
# never passes this check.
ready() { [ -f "$stamp" ] && (cd "$dest" && sha256sum --quiet --status -c .ready); }

# Debian packages: the Go toolchain, reflect2 1.0.2's sources (see below) and etcd for the tests.
need_pkgs=()
command -v etcd >/dev/null 2>&1 || need_pkgs+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
if ! ready; then
  [ -x /usr/lib/go/bin/go ] || need_pkgs+=(golang-go)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || need_pkgs+=(golang-github-modern-go-reflect2-dev)
  # The source package's Build-Depends that the build itself runs.
  command -v dpkg-source >/dev/null 2>&1 || need_pkgs+=(dpkg-dev)
  command -v rsync >/dev/null 2>&1 || need_pkgs+=(rsync)
  command -v jq >/dev/null 2>&1 || need_pkgs+=(jq)
fi
if ((${#need_pkgs[@]})); then
  [ "$(id -u)" -eq 0 ] || die "need root to install ${need_pkgs[*]} from Debian (or install them first)"
  log "installing ${need_pkgs[*]} from Debian"
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q "${need_pkgs[@]}" >&2
  }
  apt_install || { apt-get -o DPkg::Lock::Timeout=900 update -q >&2 && apt_install; }
fi

mkdir -p "$cache"
exec 9>"$dest.lock"
if ! flock -n 9; then
  log "another build of $version is running; waiting for it"
  flock 9
fi
if ready; then
  echo "$dest"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/chiops-kube-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building kube-apiserver $version from Debian's source package in $work"
log "(cold: about 10 minutes on 2 cores, ~3 GB of disk; cached afterwards)"

# `apt-get source` needs a deb-src entry. It is derived from this machine's own apt sources in a private apt
# directory, so the host's apt configuration stays untouched and no mirror is named here.
apt_dir=$work/apt
mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
src_list=$apt_dir/sources.list.d/src.sources
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  awk '/^#/ {next} /^Types:/ {print "Types: deb-src"; next} {print}' \
    /etc/apt/sources.list.d/debian.sources > "$src_list"
fi
if [ -f /etc/apt/sources.list ]; then
  sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > "$apt_dir/sources.list.d/src.list"
fi
grep -qs 'deb-src' "$apt_dir/sources.list.d/"* || die "no Debian apt source found to derive a deb-src entry from"
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update -q >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log" >&2; die "apt-get update failed"; }
(cd "$work" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$version") >>"$work/apt.log" 2>&1 ||
  { tail -20 "$work/apt.log" >&2; die "apt-get source kubernetes=$version failed"; }
# dpkg-source applies Debian's patches (debian/patches/series) while unpacking.
(cd "$work" && dpkg-source -x kubernetes_*.dsc src) >>"$work/apt.log" 2>&1 ||
  { tail -20 "$work/apt.log" >&2; die "dpkg-source -x failed"; }
src=$work/src

# Vendored reflect2 v1.0.1 makes kube-apiserver SIGSEGV on the first large CRD under Go >= 1.18;
# Debian's 1.0.2 sources are API-compatible and fix it.
reflect2=$src/vendor/github.com/modern-go/reflect2
rm -f "$reflect2"/*.go "$reflect2"/*.s
find /usr/share/gocode/src/github.com/modern-go/reflect2 -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) \
  ! -name '*_test.go' -exec cp {} "$reflect2/" \;

# The GOPATH layout debian/rules uses, with Debian's Go toolchain.
mkdir -p "$src/.go/src/k8s.io"
ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
whats=()
for b in "${bins[@]}"; do whats+=("cmd/$b"); done
started=$(date +%s)
(
  cd "$src"
  export GOPATH=$src/.go PATH=/usr/lib/go/bin:$PATH CGO_ENABLED=0 GOFLAGS=-mod=vendor
  export HOME=$work/home GOCACHE=$work/gocache
  make WHAT="${whats[*]}" 2>&1 | sed -u 's/^/[kube-apiserver] make: /' >&2
)
log "build took $(($(date +%s) - started)) s"

# Binaries land in the cache only after each one ran; the stamp comes last.
staging=$dest.new
rm -rf "$staging" && mkdir -p "$staging"
for b in "${bins[@]}"; do
  cp "$src/_output/bin/$b" "$staging/$b"
done
"$staging/kube-apiserver" --version >&2 || die "the built kube-apiserver does not run"
"$staging/kubectl" version --client >&2 || die "the built kubectl does not run"
rm -rf "$dest" && mv "$staging" "$dest"
(cd "$dest" && sha256sum "${bins[@]}" > .ready.tmp && mv .ready.tmp .ready)
log "ready: $dest"
echo "$dest"
