# scripts/lib.sh: the prelude of scripts/test, scripts/demo and every
# scripts/setup.d step (each sources it itself, so a step also works when run
# alone, from any directory). Sets ROOT, the repository, and the helpers:
#   say TEXT            a line on stderr, prefixed with the command that runs
#   as_root CMD...      CMD as root (directly, or through sudo)
#   apt_install PKG...  installs the Debian packages missing (apt-get update once)
#   will_install WHAT MB WHY
#                       before an install: says what, how big and why, and
#                       returns 0; in estimate mode records it and returns 1
#   setup_estimate      prints what the steps would install and how big
# Estimate mode (HEROKURDS_SETUP_ESTIMATE=1, in a subshell) only records what
# is missing; nothing is installed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${HEROKURDS_SETUP_BY:-}" ]; then
  HEROKURDS_SETUP_BY="herokurds setup"
  [ -f "$0" ] && HEROKURDS_SETUP_BY=$(realpath --relative-to="$ROOT" "$0")
fi
: "${APT_UPDATED:=0}" "${HEROKURDS_SETUP_ESTIMATE:=0}" "${HEROKURDS_SETUP_MB:=0}"
HEROKURDS_SETUP_ITEMS=("${HEROKURDS_SETUP_ITEMS[@]+"${HEROKURDS_SETUP_ITEMS[@]}"}")
HEROKURDS_SETUP_APT=("${HEROKURDS_SETUP_APT[@]+"${HEROKURDS_SETUP_APT[@]}"}")

say() { echo "$HEROKURDS_SETUP_BY: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root (or sudo) to run: $*"; return 1; fi
}

apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$HEROKURDS_SETUP_ESTIMATE" = 1 ]; then
    HEROKURDS_SETUP_APT+=("${missing[@]}")
    return 0
  fi
  say "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

will_install() {
  if [ "$HEROKURDS_SETUP_ESTIMATE" = 1 ]; then
    HEROKURDS_SETUP_ITEMS+=("$1 (about $2 MB)")
    HEROKURDS_SETUP_MB=$((HEROKURDS_SETUP_MB + $2))
    return 1
  fi
  say "installing $1 (about $2 MB on disk): $3"
}

# The download and disk size of the missing Debian packages and the
# dependencies apt would add, from apt's own index ("" when it has none yet,
# as on a fresh container before apt-get update).
apt_sizes() {
  local new
  new=$(apt-get -s install --no-install-recommends "$@" 2>/dev/null | awk '/^Inst / && $3 !~ /^\[/ {print $2}') || true
  [ -n "$new" ] || return 0
  # shellcheck disable=SC2086
  apt-cache show --no-all-versions $new 2>/dev/null \
    | awk '/^Size:/{d+=$2} /^Installed-Size:/{i+=$2} END{if (i) printf "%d %d\n", d/1e6, i/1024}'
}

setup_estimate() {
  local parts=() total=$HEROKURDS_SETUP_MB sizes
  if [ ${#HEROKURDS_SETUP_APT[@]} -gt 0 ]; then
    sizes=$(apt_sizes "${HEROKURDS_SETUP_APT[@]}")
    if [ -n "$sizes" ]; then
      parts+=("Debian packages ${HEROKURDS_SETUP_APT[*]} with their dependencies (${sizes#* } MB on disk, ${sizes%% *} MB to download)")
      total=$((total + ${sizes#* }))
    else
      # measured: postgresql-15, its client and LLVM, the largest part
      parts+=("Debian packages ${HEROKURDS_SETUP_APT[*]} with their dependencies (about 200 MB; apt prints the exact size)")
      total=$((total + 200))
    fi
  fi
  parts+=("${HEROKURDS_SETUP_ITEMS[@]+"${HEROKURDS_SETUP_ITEMS[@]}"}")
  if [ ${#parts[@]} -eq 0 ]; then
    say "everything the suite needs is installed; nothing to download"
  else
    say "will install (about $total MB on disk in all):"
    local p
    for p in "${parts[@]}"; do echo "  - $p" >&2; done
  fi
}
