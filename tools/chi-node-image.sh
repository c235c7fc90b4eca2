#!/usr/bin/env bash
# Builds (once) the image tests/chi/test_chi_nodes_ssh.py starts as stand-ins for Chameleon bare-metal nodes:
# the Molecule systemd image plus sshd and the `cc` user (tests/images/Containerfile.chi-node). The tag is a
# hash of the Containerfile, the unit it copies and the base image's ID, so a change to either rebuilds. Prints the image name.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images_dir="$here/../tests/images"
base=localhost/chiops-debian-systemd:bookworm
log() { printf '[chi-node-image] %s\n' "$*" >&2; }

podman image exists "$base" || "$here/molecule-host.sh" >&2
podman image exists "$base" || { echo "chi-node-image: $base is missing after molecule-host.sh" >&2; exit 1; }
key=$( { cat "$images_dir/Containerfile.chi-node" "$images_dir/chiops-ssh-hostkeys.service"; podman image inspect --format '{{.Id}}' "$base"; } \
  | sha256sum | cut -c1-16)
image="localhost/chiops-chi-node:$key"

exec 9>/tmp/chiops-chi-node-image.lock
flock 9
if ! podman image exists "$image"; then
  log "building $image"
  # Built under a temporary tag and renamed only when complete: an interrupted build never looks ready.
  podman build --quiet --tag "$image-partial" --file "$images_dir/Containerfile.chi-node" "$images_dir" \
    >/tmp/chiops-chi-node-image.log 2>&1 || { tail -20 /tmp/chiops-chi-node-image.log >&2; exit 1; }
  podman tag "$image-partial" "$image"
  podman untag "$image" "$image-partial"
fi
podman image exists "$image" || { echo "chi-node-image: $image was not built" >&2; exit 1; }
echo "$image"
