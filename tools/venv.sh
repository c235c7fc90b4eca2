#!/usr/bin/env bash
# Creates or refreshes the controller's Python environment from the pins in pyproject.toml, and installs the
# `chiops` command into it.
# The default .venv is a link into a cache keyed on the pins (and Python's version), so a fresh clone with the
# same pins (CI, a second checkout) reuses the environment instead of installing ~3 GB again. Because that
# environment is shared, no checkout's code goes into it: `chiops` is tools/launcher, which runs the code of the
# checkout it is called from (README, "One venv, many checkouts").
# The environment is marked ready only after every pin is checked against what is installed.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${CHIOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chiops}
# torch: PyPI's plain build is a multi-GB CUDA one. A directory holding the CPU wheel (this machine's), else
# PyTorch's CPU wheel index (a hosted CI runner).
wheels_dir=${CHIOPS_WHEELS_DIR:-/opt/wheels}
torch_index=${CHIOPS_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

log() { printf '[venv] %s\n' "$*"; }
fail() { printf 'venv: %s\n' "$*" >&2; exit 1; }

"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"ChiOps needs Python >= 3.11, found {sys.version.split()[0]} (set PYTHON=python3.11 or newer)")
PY

reqs=$("$python" "$root/tools/pyproject_deps.py" "$root/pyproject.toml" runtime dev)
key=$({ "$python" -c 'import sys; print(sys.version_info[:2])'; printf '%s\n' "$reqs"; } | sha256sum | cut -c1-16)
launcher_key=$(cat "$root"/tools/launcher/* | sha256sum | cut -c1-16)
stamp_name=.chiops-deps-$key-$launcher_key

if [ "$venv" = .venv ]; then
  # A link made for other pins would install these pins into another checkout's environment: re-point it.
  if [ -L .venv ] && [ "$(readlink .venv)" != "$cache/venv-$key" ]; then
    log ".venv pointed at $(readlink .venv) (other pins); re-pointing it"
    rm .venv
  fi
  if [ ! -e .venv ] && [ ! -L .venv ]; then
    mkdir -p "$cache"
    ln -s "$cache/venv-$key" .venv
    log ".venv -> $cache/venv-$key"
  fi
fi
[ -f "$venv/$stamp_name" ] && exit 0

target=$(readlink -f "$venv" 2>/dev/null || echo "$venv")
mkdir -p "$(dirname "$target")"
exec 9>"$target.lock"
if ! flock -n 9; then
  log "waiting for another install of $target to finish (lock $target.lock)"
  flock 9
fi
[ -f "$venv/$stamp_name" ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
  log "creating $target"
  "$python" -m venv "$target"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
log "installing pinned dependencies into $target (first run: several minutes, ~3 GB)"
"${pip[@]}" install --quiet --upgrade pip
torch_pin=$(printf '%s\n' "$reqs" | grep -E '^torch==' || true)
if [ -n "$torch_pin" ]; then
  if compgen -G "$wheels_dir/torch-${torch_pin#torch==}*.whl" >/dev/null; then
    log "$torch_pin from $wheels_dir"
    "${pip[@]}" install --quiet --progress-bar off --find-links "$wheels_dir" "$torch_pin"
  else
    log "$torch_pin (CPU build) from $torch_index"
    "${pip[@]}" install --quiet --progress-bar off --extra-index-url "$torch_index" "$torch_pin"
  fi
fi
reqs_file=$(mktemp)
trap 'rm -f "$reqs_file"' EXIT
printf '%s\n' "$reqs" > "$reqs_file"
"${pip[@]}" install --quiet --progress-bar off -r "$reqs_file"

# The launcher is built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
launcher_src=$(mktemp -d)
trap 'rm -rf "$reqs_file" "$launcher_src"' EXIT
cp "$root"/tools/launcher/* "$launcher_src/"
"${pip[@]}" install --quiet --no-deps --no-build-isolation --no-index --force-reinstall "$launcher_src"

log "checking every pin against what is installed"
"$venv/bin/python" "$root/tools/pyproject_deps.py" --check "$root/pyproject.toml" runtime dev \
  || fail "$target does not hold the pinned versions (see above); not marking it ready"
(cd / && CHIOPS_ROOT="$root" "$target/bin/chiops" --version >/dev/null) \
  || fail "the chiops command in $target does not run"
rm -f "$venv"/.chiops-deps-*
touch "$venv/$stamp_name"
log "ready: $target"
