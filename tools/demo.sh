#!/usr/bin/env bash
# `make demo`: the whole pipeline on this machine through inventories/local (docs/rollout.md).
# KEEP=1 leaves Ray, Prometheus and the load generator running; stop them with
#   ansible-playbook -i inventories/local playbooks/local_down.yml
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export ANSIBLE_CONFIG="$root/ansible.cfg" PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
demo="$root/runs/local/demo"
extra=$(printf '{"chiops_registry": "%s/registry", "chiops_reports_dir": "%s/reports", "chiops_keep_running": %s}' \
  "$demo" "$demo" "$([ "${KEEP:-0}" = 1 ] && echo true || echo false)")
start=$SECONDS
status=0
ansible-playbook -i inventories/local playbooks/demo.yml -e "$extra" || status=$?
if [ -f "$demo/summary.json" ]; then
  echo
  python -c 'import json, sys; print(json.load(open(sys.argv[1]))["table"])' "$demo/summary.json"
fi
[ "$status" -eq 0 ] || { echo "make demo: FAILED (see $demo/)" >&2; exit "$status"; }
echo "make demo: finished in $((SECONDS - start)) s; summary in runs/local/demo/summary.json, reports in runs/local/demo/"
