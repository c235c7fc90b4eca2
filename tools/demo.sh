#!/usr/bin/env bash
# `make demo`: the whole pipeline on this machine through inventories/local.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f playbooks/demo.yml ]; then
  cat >&2 <<'MSG'
make demo: not built yet.
It will: train the reference model v1 and put it in production on a local Ray cluster watched by a local
Prometheus, start synthetic traffic with delayed feedback, roll out v2 (promoted) and v3 (caught at canary and
rolled back), and print each gate's measured values and decisions.
MSG
  exit 3
fi
exec ansible-playbook -i inventories/local playbooks/demo.yml ${KEEP:+-e chiops_keep_running=true}
