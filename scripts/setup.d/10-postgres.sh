#!/usr/bin/env bash
# PostgreSQL server and client binaries (initdb, pg_ctl, pg_dump, pg_restore,
# psql, pgbench), contrib extensions, openssl, and what the Rust build links.
# Runs alone too (from any directory): it sources scripts/lib.sh itself.
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
apt_install postgresql postgresql-client postgresql-contrib openssl libssl-dev pkg-config
if [ -z "${HEROKURDS_PGBIN:-}" ]; then
  HEROKURDS_PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
export HEROKURDS_PGBIN
