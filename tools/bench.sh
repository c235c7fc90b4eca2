#!/usr/bin/env bash
# Runs every benchmark in bench/ in turn; each prints ratios measured within its own run.
# Each holds /tmp/chiops-live.lock while it runs: on a machine shared with other live stacks (Ray, Prometheus),
# only one runs at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
benches=(bench/bench_*.py)
[ ${#benches[@]} -gt 0 ] || { echo "make bench: no benchmark in bench/ yet" >&2; exit 1; }
for b in "${benches[@]}"; do
  echo "=== $b"
  flock /tmp/chiops-live.lock python "$b"
done
