#!/usr/bin/env bash
# Installs the Debian servers the tests start for themselves on 127.0.0.1: PostgreSQL (the feedback-store tests,
# tests/feedback/postgres.py runs initdb into a temporary directory) and Prometheus with promtool (the rule and
# query tests; the local platform installs the same package through roles/prometheus). Nothing here starts a
# server: the packages' own services are stopped. Idempotent: a second run only checks.
set -euo pipefail
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
have_prometheus() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }

missing=()
have_postgres || missing+=(postgresql)
have_prometheus || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "servers-host: need root to install ${missing[*]} (run as root or install them first)" >&2
  exit 1
fi
echo "[servers-host] installing ${missing[*]} from Debian"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
# The packages start servers on 5432 and 9090; the tests and the platform run their own, so stop them.
for service in "${missing[@]}"; do
  systemctl disable --now "$service" >/dev/null 2>&1 || true
done
have_postgres || { echo "servers-host: postgresql installed but no initdb under /usr/lib/postgresql/*/bin" >&2; exit 1; }
have_prometheus || { echo "servers-host: prometheus installed but no prometheus/promtool on PATH" >&2; exit 1; }
