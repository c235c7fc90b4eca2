#!/usr/bin/env bash
# Builds the serving image (deploy/images/Containerfile.serving) with podman from the locally built Debian base
# and the pins of pyproject.toml, unless an image carrying the hash of exactly these inputs already exists.
# A build that fails or is interrupted leaves no image under the final tag and never prints "ready".
#   CHIOPS_SERVING_IMAGE  tag to build (default localhost/chiops-serving:latest)
#   CHIOPS_WHEELS_DIR     where the torch wheel of the pinned version lies (default /opt/wheels)
#   CHIOPS_CA_BUNDLE      CA bundle pip trusts during the build (default the host's)
# Prints progress on stderr and, last, the image ID on stdout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
image=${CHIOPS_SERVING_IMAGE:-localhost/chiops-serving:latest}
base=localhost/chiops-debian:bookworm
wheels=${CHIOPS_WHEELS_DIR:-/opt/wheels}
cache=${CHIOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chiops}
python=${PYTHON:-python3}
log() { printf '[image] %s\n' "$*" >&2; }
die() { printf 'image: %s\n' "$*" >&2; exit 1; }

command -v podman >/dev/null || die "podman is not installed (tools/molecule-host.sh installs it)"
podman image exists "$base" || "$root/tools/molecule-host.sh" >&2
podman image exists "$base" || die "$base is missing after tools/molecule-host.sh"

# The build context holds only what the image carries, so its hash is the hash of the inputs.
ctx=$(mktemp -d /tmp/chiops-image.XXXXXX)
tmp_tag=""
cleanup() {
  rm -rf "$ctx"
  if [ -n "$tmp_tag" ]; then podman rmi --force "$tmp_tag" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
tar -C "$root" --exclude=__pycache__ --exclude='*.pyc' -cf - serving model_registry | tar -C "$ctx" -xf -
cp "$root/deploy/images/Containerfile.serving" "$ctx/Containerfile"
"$python" - "$root/pyproject.toml" "$root/deploy/images/serving-packages.txt" > "$ctx/requirements.txt" <<'PY'
import re, sys, tomllib
pins = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
byname = {re.split(r"==", p)[0].lower(): p for p in pins}
wanted = [w.strip() for w in open(sys.argv[2]) if w.strip() and not w.startswith("#")]
missing = [w for w in wanted if w.lower() not in byname]
if missing:
    sys.exit(f"image: {', '.join(missing)} not pinned in pyproject.toml")
# torch too: it is installed from the wheel directory first, but listed here so pip installs its dependencies
print("\n".join([byname["torch"], *(byname[w.lower()] for w in wanted)]))
PY
torch_version=$("$python" -c 'import sys, tomllib; d = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]; print(next(p.split("==")[1] for p in d if p.startswith("torch==")))' "$root/pyproject.toml")
shopt -s nullglob
torch_wheels=("$wheels"/torch-"$torch_version"[+-]*.whl)
shopt -u nullglob
[ ${#torch_wheels[@]} -eq 1 ] || die "want one torch $torch_version wheel in $wheels, found ${#torch_wheels[@]} (set CHIOPS_WHEELS_DIR)"

hash=$(
  {
    (cd "$ctx" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    podman image inspect --format '{{.Id}}' "$base"
    for w in "${torch_wheels[@]}"; do printf '%s %s\n' "$(basename "$w")" "$(stat -c %s "$w")"; done
  } | sha256sum | cut -c1-16
)
label() { podman image inspect --format '{{index .Labels "org.chiops.inputs"}}' "$1" 2>/dev/null || true; }
if podman image exists "$image" && [ "$(label "$image")" = "$hash" ]; then
  log "cached: $image (inputs $hash)"
  podman image inspect --format '{{.Id}}' "$image"
  exit 0
fi

mkdir -p "$cache/pip-image"
exec 9>"$cache/image.lock"
flock 9
if podman image exists "$image" && [ "$(label "$image")" = "$hash" ]; then
  log "cached: $image (built by another run meanwhile)"
  podman image inspect --format '{{.Id}}' "$image"
  exit 0
fi
old_id=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
tmp_tag="${image%:*}:building-$hash"
log "building $image (inputs $hash; first build ~10-20 min: torch + ray, ~2 GB)"
started=$SECONDS
# --network host: apt and pip reach their registries without a podman bridge. Layers are kept as the build
# cache, so a change to the serving code rebuilds only the last layers; superseded ones are pruned below.
podman build --quiet --force-rm --network host \
  --volume "$wheels:/wheels:ro" \
  --volume "$cache/pip-image:/root/.cache/pip" \
  --volume "${CHIOPS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}:/build-ca.crt:ro" \
  --build-arg "BASE=$base" --build-arg "TORCH_VERSION=$torch_version" --build-arg "INPUTS_HASH=$hash" \
  --build-arg "TORCH_WHEEL=$(basename "${torch_wheels[0]}")" \
  --file "$ctx/Containerfile" --tag "$tmp_tag" "$ctx" >/dev/null
[ "$(label "$tmp_tag")" = "$hash" ] || die "the built image lacks the inputs label $hash"
podman run --rm --network none "$tmp_tag" python -c 'import ray, torch, obstore, serving.apps, model_registry' \
  || die "the built image cannot import the serving code"
podman tag "$tmp_tag" "$image"
podman untag "$tmp_tag" "$tmp_tag"  # without a second argument untag would remove every name
tmp_tag=""
new_id=$(podman image inspect --format '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then podman rmi "$old_id" >/dev/null 2>&1 || true; fi
# Untagged images of earlier builds (superseded images and their cache layers), only ours (by label).
podman image prune --force --filter label=org.chiops.image=serving >/dev/null
log "ready: $image (inputs $hash) in $((SECONDS - started)) s"
echo "$new_id"
