#!/usr/bin/env bash
# moto (local S3, Secrets Manager and RDS APIs) and the aws CLI (the speed
# baseline of herokurds-s3-sync) in a project-local virtualenv, .venv/.
# Installs only what is missing; a few stat calls once installed.
# HEROKURDS_SETUP_DEMO=1 (scripts/demo): moto only, the demo needs no aws CLI.
# Runs alone too (from any directory): it sources scripts/lib.sh itself.
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
HEROKURDS_MOTO_VERSION=5.2.1
HEROKURDS_AWSCLI_VERSION=1.46.3 # its botocore pin is compatible with moto 5.2.1's boto3
_venv="$ROOT/.venv"
_want=("moto[server]==$HEROKURDS_MOTO_VERSION")
# measured: du -sm .venv, 478 MB with both, 169 MB of it the aws CLI's own
_mb=310 _what="moto $HEROKURDS_MOTO_VERSION (pip, into .venv/)"
_why="moto serves S3, Secrets Manager and RDS locally to the tests and the demo"
_have() { compgen -G "$_venv/lib/python3*/site-packages/$1-$2.dist-info" >/dev/null; }
_missing=0
# Set to executables (a shared install): nothing to do here.
_given() { [ -n "${1:-}" ] && [ -x "$1" ]; }
_given "${HEROKURDS_MOTO_SERVER:-}" \
  || { [ -x "$_venv/bin/moto_server" ] && _have moto "$HEROKURDS_MOTO_VERSION"; } || _missing=1
if [ "${HEROKURDS_SETUP_DEMO:-0}" != 1 ]; then
  _want+=("awscli==$HEROKURDS_AWSCLI_VERSION")
  _mb=480 _what="moto $HEROKURDS_MOTO_VERSION and the aws CLI $HEROKURDS_AWSCLI_VERSION (pip, into .venv/)"
  _why="$_why; the aws CLI is the S3 benchmark's baseline"
  _given "${HEROKURDS_AWS_CLI:-}" \
    || { [ -x "$_venv/bin/aws" ] && _have awscli "$HEROKURDS_AWSCLI_VERSION"; } || _missing=1
fi
if [ $_missing = 1 ] && [ ! -x "$_venv/bin/python" ]; then
  if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3 python3-venv
  fi
fi
if [ $_missing = 1 ] && will_install "$_what" $_mb "$_why"; then
  [ -x "$_venv/bin/python" ] || python3 -m venv "$_venv"
  "$_venv/bin/pip" install -q --disable-pip-version-check "${_want[@]}"
fi
unset -f _have _given
unset _venv _want _mb _what _why _missing
: "${HEROKURDS_MOTO_SERVER:=$ROOT/.venv/bin/moto_server}"
: "${HEROKURDS_AWS_CLI:=$ROOT/.venv/bin/aws}"
export HEROKURDS_MOTO_SERVER HEROKURDS_AWS_CLI
