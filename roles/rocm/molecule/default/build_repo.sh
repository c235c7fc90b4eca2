#!/bin/bash
# Builds a signed apt repository laid out like repo.radeon.com, holding stand-ins named like AMD's packages:
# amdgpu-dkms (no module inside), rocm-core (/opt/rocm-<ver>), rocminfo (prints a gfx908 agent) and the rocm
# meta package. Usage: build_repo.sh ROOT ROCM_VERSION AMDGPU_VERSION CODENAME
set -euo pipefail
root=$1 rocm=$2 amdgpu=$3 codename=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
IFS=. read -r major minor patch <<<"$rocm"
build=$(printf '%d%02d%02d' "$major" "$minor" "$patch")
pkgver="$rocm.$build-1~molecule"

deb() { # name version depends dir-with-content
  local name=$1 version=$2 depends=$3 dir=$4
  mkdir -p "$dir/DEBIAN"
  {
    echo "Package: $name"
    echo "Version: $version"
    echo "Architecture: all"
    echo "Maintainer: ChiOps Molecule <molecule@localhost>"
    [ -n "$depends" ] && echo "Depends: $depends"
    echo "Description: stand-in for AMD's $name (Molecule test repository)"
  } >"$dir/DEBIAN/control"
  dpkg-deb --root-owner-group --build "$dir" "$work/${name}_${version}_all.deb" >/dev/null
}

mkdir -p "$work/amdgpu-dkms/usr/share/doc/amdgpu-dkms"
echo "stand-in: carries no kernel module" >"$work/amdgpu-dkms/usr/share/doc/amdgpu-dkms/README"
deb amdgpu-dkms "1:6.16.6.${amdgpu//./}00-1~molecule" "" "$work/amdgpu-dkms"

mkdir -p "$work/rocm-core/opt/rocm-$rocm/lib" "$work/rocm-core/opt/rocm-$rocm/.info"
echo "$rocm-$build" >"$work/rocm-core/opt/rocm-$rocm/.info/version"
ln -s "rocm-$rocm" "$work/rocm-core/opt/rocm"
deb rocm-core "$pkgver" "" "$work/rocm-core"

mkdir -p "$work/rocminfo/opt/rocm-$rocm/bin"
cat >"$work/rocminfo/opt/rocm-$rocm/bin/rocminfo" <<'INFO'
#!/bin/sh
# Stand-in with the layout of rocminfo's agent list on an MI100 node.
cat <<OUT
ROCk module is loaded
=====================
HSA Agents
==========
*******
Agent 1
*******
  Name:                    AMD EPYC 7763 64-Core Processor
  Device Type:             CPU
*******
Agent 2
*******
  Name:                    gfx908
  Marketing Name:          AMD Instinct MI100
  Device Type:             GPU
OUT
INFO
chmod 0755 "$work/rocminfo/opt/rocm-$rocm/bin/rocminfo"
deb rocminfo "1.0.0.$build-1~molecule" "rocm-core" "$work/rocminfo"
deb rocm "$pkgver" "rocm-core (= $pkgver), rocminfo" "$work/rocm"

export GNUPGHOME="$work/gnupg"
mkdir -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key "ChiOps Molecule throwaway <molecule@localhost>" ed25519 sign 1d
mkdir -p "$root/rocm"
gpg --batch --armor --export >"$root/rocm/rocm.gpg.key"
gpg --batch --with-colons --list-keys | awk -F: '/^fpr:/ {print $10; exit}' >"$root/fingerprint"

publish() { # repo-dir packages...
  local repo=$1; shift
  local pool="$repo/pool/main" bin="$repo/dists/$codename/main/binary-amd64"
  mkdir -p "$pool" "$bin"
  for p in "$@"; do cp "$work/${p}_"*.deb "$pool/"; done
  (cd "$repo" && apt-ftparchive packages pool >"dists/$codename/main/binary-amd64/Packages")
  (cd "$repo/dists/$codename" && apt-ftparchive \
    -o APT::FTPArchive::Release::Origin=repo.radeon.com -o APT::FTPArchive::Release::Label=molecule \
    -o APT::FTPArchive::Release::Suite="$codename" -o APT::FTPArchive::Release::Codename="$codename" \
    -o APT::FTPArchive::Release::Architectures=amd64 -o APT::FTPArchive::Release::Components=main \
    release . >Release)
  gpg --batch --yes --clearsign -o "$repo/dists/$codename/InRelease" "$repo/dists/$codename/Release"
}
publish "$root/amdgpu/$amdgpu/ubuntu" amdgpu-dkms
publish "$root/rocm/apt/$rocm" rocm-core rocminfo rocm
publish "$root/graphics/$rocm/ubuntu"
