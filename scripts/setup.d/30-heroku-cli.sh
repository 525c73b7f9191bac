# Heroku's own CLI (npm package `heroku`, pinned), installed under
# $ROOT/.cache/heroku-cli. The Heroku emulator's compatibility test drives it
# (herokurds-cli/tests/heroku_cli_compat.rs) through HEROKURDS_HEROKU_CLI.
# Idempotent: a no-op when the pinned version is already there.
HEROKURDS_HEROKU_CLI_VERSION=11.10.0
HEROKURDS_HEROKU_CLI_PREFIX="$ROOT/.cache/heroku-cli"
if [ -z "${HEROKURDS_HEROKU_CLI:-}" ]; then
  HEROKURDS_HEROKU_CLI="$HEROKURDS_HEROKU_CLI_PREFIX/node_modules/.bin/heroku"
  _stamp="$HEROKURDS_HEROKU_CLI_PREFIX/.installed-$HEROKURDS_HEROKU_CLI_VERSION"
  if [ ! -f "$_stamp" ] || [ ! -x "$HEROKURDS_HEROKU_CLI" ]; then
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    echo "scripts/test: installing heroku CLI $HEROKURDS_HEROKU_CLI_VERSION (npm) into $HEROKURDS_HEROKU_CLI_PREFIX" >&2
    mkdir -p "$HEROKURDS_HEROKU_CLI_PREFIX"
    [ -f "$HEROKURDS_HEROKU_CLI_PREFIX/package.json" ] || echo '{"private":true}' >"$HEROKURDS_HEROKU_CLI_PREFIX/package.json"
    npm install --prefix "$HEROKURDS_HEROKU_CLI_PREFIX" --no-audit --no-fund --loglevel=error \
      "heroku@$HEROKURDS_HEROKU_CLI_VERSION" >&2
    touch "$_stamp"
  fi
  unset _stamp
fi
export HEROKURDS_HEROKU_CLI
