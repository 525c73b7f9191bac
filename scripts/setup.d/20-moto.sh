# moto (local S3, Secrets Manager and RDS APIs) and the aws CLI (the speed
# baseline of herokurds-s3-sync) in a project-local virtualenv, .venv/.
# Installs only what is missing; a few stat calls once installed.
HEROKURDS_MOTO_VERSION=5.2.1
HEROKURDS_AWSCLI_VERSION=1.46.3 # its botocore pin is compatible with moto 5.2.1's boto3
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3 python3-venv
  fi
  echo "scripts/test: creating $ROOT/.venv" >&2
  python3 -m venv "$ROOT/.venv"
fi
if [ ! -x "$ROOT/.venv/bin/moto_server" ] || [ ! -x "$ROOT/.venv/bin/aws" ] \
  || ! compgen -G "$ROOT/.venv/lib/python3*/site-packages/moto-$HEROKURDS_MOTO_VERSION.dist-info" >/dev/null \
  || ! compgen -G "$ROOT/.venv/lib/python3*/site-packages/awscli-$HEROKURDS_AWSCLI_VERSION.dist-info" >/dev/null; then
  echo "scripts/test: installing moto[server]==$HEROKURDS_MOTO_VERSION awscli==$HEROKURDS_AWSCLI_VERSION into .venv" >&2
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check \
    "moto[server]==$HEROKURDS_MOTO_VERSION" "awscli==$HEROKURDS_AWSCLI_VERSION"
fi
: "${HEROKURDS_MOTO_SERVER:=$ROOT/.venv/bin/moto_server}"
: "${HEROKURDS_AWS_CLI:=$ROOT/.venv/bin/aws}"
export HEROKURDS_MOTO_SERVER HEROKURDS_AWS_CLI
