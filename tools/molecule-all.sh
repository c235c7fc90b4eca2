#!/usr/bin/env bash
# Runs `molecule test` for each named role in turn and prints one summary line per scenario.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export ANSIBLE_ROLES_PATH="$root/roles"
export ANSIBLE_CONFIG="$root/ansible.cfg"
# Every scenario's molecule.yml is merged over this one file (driver, provisioner defaults, test sequence).
base_config="$root/.config/molecule/config.yml"
# roles/trainer mounts a torch wheel directory and a PyPI mirror: this machine's (/opt/wheels, /opt/pypi) when
# present, else what tools/molecule-host.sh downloaded into the cache and an empty mirror (PyPI itself is used).
cache=${XDG_CACHE_HOME:-$HOME/.cache}/chiops
if [ -z "${CHIOPS_WHEELS_DIR:-}" ] && ! compgen -G "/opt/wheels/torch-*.whl" >/dev/null; then
  export CHIOPS_WHEELS_DIR="$cache/wheels"
fi
if [ -z "${CHIOPS_PYPI_DIR:-}" ] && [ ! -d /opt/pypi ]; then
  mkdir -p "$cache/pypi-empty/simple"
  export CHIOPS_PYPI_DIR="$cache/pypi-empty"
fi
[ $# -gt 0 ] || { echo "molecule-all: no role has a molecule/default scenario yet" >&2; exit 1; }

declare -a summary
failed=0
for role in "$@"; do
  dir="$root/roles/$role"
  [ -f "$dir/molecule/default/molecule.yml" ] || { echo "molecule-all: roles/$role has no scenario" >&2; exit 2; }
  echo "=== molecule test: $role"
  start=$SECONDS
  if (cd "$dir" && molecule --base-config "$base_config" test); then
    summary+=("PASS $role ($((SECONDS - start)) s)")
  else
    summary+=("FAIL $role ($((SECONDS - start)) s)")
    failed=$((failed + 1))
  fi
done
printf '%s\n' "--- Molecule summary" "${summary[@]}"
passed=$(( $# - failed ))
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
