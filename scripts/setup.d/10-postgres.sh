# PostgreSQL server and client binaries (initdb, pg_ctl, pg_dump, pg_restore,
# psql, pgbench), contrib extensions, openssl, and what the Rust build links.
apt_install postgresql postgresql-client postgresql-contrib openssl libssl-dev pkg-config
if [ -z "${HEROKURDS_PGBIN:-}" ]; then
  HEROKURDS_PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
fi
export HEROKURDS_PGBIN
