# moto (local S3, Secrets Manager and RDS APIs) and the aws CLI (the speed
# baseline of herokurds-s3-sync) in a project-local virtualenv, .venv/.
# Installs only what is missing; a no-op (two stat calls) once installed.
HEROKURDS_MOTO_VERSION=5.2.1
HEROKURDS_AWSCLI_VERSION=1.46.3 # its botocore pin is compatible with moto's boto3
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null \
    || apt_install python3-venv
  echo "scripts/test: creating $ROOT/.venv" >&2
  python3 -m venv "$ROOT/.venv"
fi
if [ ! -x "$ROOT/.venv/bin/moto_server" ] || [ ! -x "$ROOT/.venv/bin/aws" ] \
  || [ ! -d "$ROOT/.venv/lib/python3"*/site-packages/moto-$HEROKURDS_MOTO_VERSION.dist-info ]; then
  echo "scripts/test: installing moto[server]==$HEROKURDS_MOTO_VERSION awscli==$HEROKURDS_AWSCLI_VERSION into .venv" >&2
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check \
    "moto[server]==$HEROKURDS_MOTO_VERSION" "awscli==$HEROKURDS_AWSCLI_VERSION"
fi
: "${HEROKURDS_MOTO_SERVER:=$ROOT/.venv/bin/moto_server}"
: "${HEROKURDS_AWS_CLI:=$ROOT/.venv/bin/aws}"
export HEROKURDS_MOTO_SERVER HEROKURDS_AWS_CLI
