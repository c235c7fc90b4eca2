#!/usr/bin/env bash
# Installs Debian's Prometheus (prometheus + promtool) for the tests that evaluate the rules and queries with
# Prometheus' own engine (tests/rollout/test_monitoring.py, test_queries_promql.py). The local platform installs
# the same package through roles/prometheus; this makes the tests independent of which test ran first.
# Idempotent: a second run only checks.
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "prometheus-host: need root to install prometheus (run as root or install it first)" >&2
  exit 1
fi
echo "[prometheus-host] installing prometheus from Debian"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
# Debian's package starts a server on 9090; the tests and the platform run their own, so stop it.
systemctl disable --now prometheus >/dev/null 2>&1 || true
command -v promtool >/dev/null || { echo "prometheus-host: prometheus installed but no promtool" >&2; exit 1; }
