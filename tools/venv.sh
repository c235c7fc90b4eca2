#!/usr/bin/env bash
# Creates or refreshes the controller's Python environment from the pins in pyproject.toml.
# The default .venv is a link into a cache keyed on pyproject.toml's content, so a fresh clone with the same
# pins (CI, a second checkout) reuses the environment instead of installing ~3 GB again.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${CHIOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chiops}

"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"ChiOps needs Python >= 3.11, found {sys.version.split()[0]} (set PYTHON=python3.11 or newer)")
PY

key=$(sha256sum "$root/pyproject.toml" | cut -c1-16)
stamp_name=.chiops-deps-$key

if [ "$venv" = .venv ] && [ ! -e .venv ] && [ ! -L .venv ]; then
  mkdir -p "$cache"
  ln -s "$cache/venv-$key" .venv
  echo "[venv] .venv -> $cache/venv-$key"
fi
[ -f "$venv/$stamp_name" ] && exit 0

target=$(readlink -f "$venv" 2>/dev/null || echo "$venv")
exec 9>"$target.lock" 2>/dev/null || exec 9>/dev/null
flock 9
[ -f "$venv/$stamp_name" ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
  echo "[venv] creating $target"
  "$python" -m venv "$target"
fi
echo "[venv] installing pinned dependencies into $target (first run: several minutes, ~3 GB)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
reqs=$(mktemp)
"$venv/bin/python" "$root/tools/pyproject_deps.py" "$root/pyproject.toml" runtime dev > "$reqs"
"$venv/bin/python" -m pip install --quiet --progress-bar off -r "$reqs"
rm -f "$reqs" "$venv"/.chiops-deps-*
touch "$venv/$stamp_name"
echo "[venv] ready"
