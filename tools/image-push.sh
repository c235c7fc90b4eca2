#!/usr/bin/env bash
# Pushes the serving image (built or found cached by tools/image.sh) to an OCI registry and prints the
# reference by digest that the Kubernetes inventories take (chiops_image_registry, chiops_serving_image_digest).
#   tools/image-push.sh REGISTRY [podman push options, e.g. --tls-verify=false for a plain-HTTP registry]
set -euo pipefail
[ $# -ge 1 ] && [ -n "$1" ] || { echo "usage: tools/image-push.sh REGISTRY[/PATH] [podman push options]" >&2; exit 2; }
registry=${1%/}
shift
root=$(cd "$(dirname "$0")/.." && pwd)
image_id=$("$root/tools/image.sh" | tail -1)
label=$(podman image inspect --format '{{index .Labels "org.chiops.inputs"}}' "$image_id")
digest_file=$(mktemp)
trap 'rm -f "$digest_file"' EXIT
echo "[image-push] pushing $image_id to $registry/chiops-serving:$label" >&2
# zstd: compresses the torch + Ray layers much faster than gzip on a small machine (podman 4.3 has no level option)
podman push --quiet --compression-format=zstd --digestfile "$digest_file" "$@" \
  "$image_id" "docker://$registry/chiops-serving:$label" >&2
digest=$(cat "$digest_file")
[[ $digest == sha256:* ]] || { echo "image-push: podman printed no digest" >&2; exit 1; }
echo "$registry/chiops-serving@$digest"
