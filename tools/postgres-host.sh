#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the feedback-store tests (tests/feedback/postgres.py starts a
# throwaway server from it on 127.0.0.1; nothing here starts one). Idempotent: a second run only checks.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "postgres-host: need root to install postgresql (run as root or install it first)" >&2
  exit 1
fi
echo "[postgres-host] installing postgresql from Debian"
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
# Debian's package starts a cluster on port 5432; the tests use their own servers, so stop it from running.
systemctl disable --now postgresql >/dev/null 2>&1 || true
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || {
  echo "postgres-host: postgresql installed but no initdb under /usr/lib/postgresql/*/bin" >&2
  exit 1
}
