#!/usr/bin/env bash
# Heroku's own CLI (npm package `heroku`, pinned), installed under
# $ROOT/.cache/heroku-cli. The Heroku emulator's compatibility test
# (herokurds-cli/tests/heroku_cli_compat.rs) drives it through
# HEROKURDS_HEROKU_CLI. Idempotent: a no-op once the pinned version is there.
# This CLI version needs Node.js >= 20 (the machine's; Debian's is older).
# Runs alone too (from any directory): it sources scripts/lib.sh itself.
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
HEROKURDS_HEROKU_CLI_VERSION=11.10.0
HEROKURDS_HEROKU_CLI_PREFIX="$ROOT/.cache/heroku-cli"
if [ -z "${HEROKURDS_HEROKU_CLI:-}" ]; then
  HEROKURDS_HEROKU_CLI="$HEROKURDS_HEROKU_CLI_PREFIX/node_modules/.bin/heroku"
  _stamp="$HEROKURDS_HEROKU_CLI_PREFIX/.installed-$HEROKURDS_HEROKU_CLI_VERSION"
  if [ ! -f "$_stamp" ] || [ ! -x "$HEROKURDS_HEROKU_CLI" ]; then
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    _node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [ "$HEROKURDS_SETUP_ESTIMATE" != 1 ] && [ "$_node_major" -lt 20 ]; then
      say "heroku CLI $HEROKURDS_HEROKU_CLI_VERSION needs Node.js >= 20 (found ${_node_major}); not installing it, so heroku_cli_compat will fail"
    # measured: du -sm .cache/heroku-cli
    elif will_install "heroku CLI $HEROKURDS_HEROKU_CLI_VERSION (npm, into .cache/heroku-cli)" 400 \
      "the emulator's compatibility test drives Heroku's own CLI"; then
      mkdir -p "$HEROKURDS_HEROKU_CLI_PREFIX"
      [ -f "$HEROKURDS_HEROKU_CLI_PREFIX/package.json" ] || echo '{"private":true}' >"$HEROKURDS_HEROKU_CLI_PREFIX/package.json"
      npm install --prefix "$HEROKURDS_HEROKU_CLI_PREFIX" --no-audit --no-fund --loglevel=error \
        "heroku@$HEROKURDS_HEROKU_CLI_VERSION" >&2
      touch "$_stamp"
    fi
    unset _node_major
  fi
  unset _stamp
fi
export HEROKURDS_HEROKU_CLI
