#!/usr/bin/env bash
# Creates or refreshes the controller's Python environment from the pins in pyproject.toml.
# The stamp is keyed on pyproject.toml's content, so a second run with the same pins costs ~0.1 s.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}
root=$(cd "$(dirname "$0")/.." && pwd)

"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"ChiOps needs Python >= 3.11, found {sys.version.split()[0]} (set PYTHON=python3.11 or newer)")
PY

key=$(sha256sum "$root/pyproject.toml" | cut -c1-16)
stamp="$venv/.chiops-deps-$key"
[ -f "$stamp" ] && exit 0

if [ ! -x "$venv/bin/python" ]; then
  echo "[venv] creating $venv"
  "$python" -m venv "$venv"
fi
echo "[venv] installing pinned dependencies into $venv (first run: several minutes, ~3 GB)"
"$venv/bin/python" -m pip install --quiet --upgrade pip
reqs=$(mktemp)
"$venv/bin/python" "$root/tools/pyproject_deps.py" "$root/pyproject.toml" runtime dev > "$reqs"
"$venv/bin/python" -m pip install --quiet --progress-bar off -r "$reqs"
rm -f "$reqs" "$venv"/.chiops-deps-*
touch "$stamp"
echo "[venv] ready"
