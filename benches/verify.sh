#!/usr/bin/env bash
# benches/verify.sh - how long herokurds-verify takes next to a copy of the
# same database, and what each row-hash choice costs.
#
# Uses ../shared/bench/anchors.sh to build the two clusters, load its ~SIZE_MB
# dataset (pgbench + customers/orders/attachments) and copy it with the
# methods in METHODS (default "a c h": pg_dump|psql, pgcopydb clone, and
# herokurds-transfer, the last of which leaves the copy verified), keeping
# the clusters (KEEP=1); prints anchors.sh's table. Then, on the copy:
#   1. herokurds-verify --jobs JOBS (full), and --counts-only;
#   2. per-row hash variants on the largest table, best of 3 each;
# and prints MB/s and the ratio of verify's time to each copy method's.
# Stops the two clusters it started and removes their directory.
#
# Usage: benches/verify.sh [SIZE_MB]     (default 1024)
# Env:   ANCHORS=../shared/bench/anchors.sh  SRC_PORT=56432 TGT_PORT=56433 JOBS=2
#        METHODS="a c h"  VERIFY_BIN=target/release/herokurds-verify (else debug)
#        HEROKURDS_TRANSFER=target/release/herokurds-transfer (method h)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1024}
ANCHORS=${ANCHORS:-../shared/bench/anchors.sh}
[ -f "$ANCHORS" ] || ANCHORS=/work/shared/bench/anchors.sh
export SRC_PORT=${SRC_PORT:-56432} TGT_PORT=${TGT_PORT:-56433} JOBS=${JOBS:-2}
export METHODS=${METHODS:-"a c h"} KEEP=1
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BIN=${VERIFY_BIN:-target/release/herokurds-verify}
[ -x "$BIN" ] || BIN=target/debug/herokurds-verify
[ -x "$BIN" ] || cargo build -q -p herokurds-cli --bin herokurds-verify
W=$(mktemp -d /tmp/verify-bench.XXXXXX)

bash "$ANCHORS" "$SIZE_MB" >"$W/anchors.out" 2>"$W/anchors.err" || {
  tail -20 "$W/anchors.err" >&2; exit 2; }
DATA=$(sed -n 's/.*data under \(.*\)$/\1/p' "$W/anchors.err")
stop() {
  for c in src tgt; do
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DATA/$c/data" -m fast stop >/dev/null 2>&1 ||
      "$PGBIN/pg_ctl" -D "$DATA/$c/data" -m fast stop >/dev/null 2>&1 || true
  done
  rm -rf "$DATA"
}
trap stop EXIT
SOURCE_DATABASE_URL=$(sed -n 's/.*  source: \(postgres:.*\)$/\1/p' "$W/anchors.err")
TARGET_DATABASE_URL=$(sed -n 's/.*  target: \(postgres:.*\)$/\1/p' "$W/anchors.err")
export SOURCE_DATABASE_URL TARGET_DATABASE_URL
SRC_MB=$(sed -n 's/.*source database size = \([0-9]*\) MB.*/\1/p' "$W/anchors.err")

timed() { # label command... -> prints seconds
  local t0 t1; t0=$(date +%s.%N); "$@" >"$W/out" 2>"$W/err" || [ $? = 1 ]; t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}'
}
full=$(timed "$BIN" --jobs "$JOBS"); full_out=$(tail -1 "$W/err")
counts=$(timed "$BIN" --jobs "$JOBS" --counts-only)

P=("$PGBIN/psql" -X -q -h "$DATA/src" -p "$SRC_PORT" -U postgres -d srcdb)
big=$("${P[@]}" -At -c "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n
  on n.oid = c.relnamespace where c.relkind = 'r' and n.nspname = 'public' order by pg_relation_size(c.oid) desc limit 1")
declare -A Q=(
  [one_hashtextextended]="sum(hashtextextended(ROW(t.*)::text, 0))"
  [two_hashtextextended]="sum(hashtextextended(ROW(t.*)::text, 0)), sum(hashtextextended(ROW(t.*)::text, 1))"
  [md5_64bit]="sum(('x' || left(md5(ROW(t.*)::text), 16))::bit(64)::bigint)"
  [count_only]="0"
)
hashes=""
for k in count_only one_hashtextextended two_hashtextextended md5_64bit; do
  best=999999
  for _ in 1 2 3; do
    ms=$("${P[@]}" -c "SET jit = off" -c "SET extra_float_digits = 3" -c '\timing on' \
          -c "SELECT count(*), ${Q[$k]} FROM ONLY $big t" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
    best=$(awk -v a="$best" -v b="$ms" 'BEGIN{print (b < a) ? b : a}')
  done
  hashes+=$(printf '  %-22s %8.0f ms\n' "$k" "$best")$'\n'
done

echo "== benches/verify.sh ($(date -u +%FT%TZ)), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "source ${SRC_MB} MB; both clusters on this machine; JOBS=$JOBS; $BIN"
echo "anchors.sh (METHODS=\"$METHODS\"):"
sed 's/^/  /' "$W/anchors.out"
grep -E '^[a-z] ' "$W/anchors.out" | grep -v '^m ' | while read -r m rest; do
  s=$(echo "$rest" | awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]$/) {print $i; exit}}')
  [ -n "$s" ] && printf 'copy %s: %s s  -> verify/copy = %s\n' "$m $(echo "$rest" | cut -c1-50)" "$s" \
    "$(awk -v v="$full" -v c="$s" 'BEGIN{printf "%.2f", v/c}')"
done
printf 'herokurds-verify (full):        %6s s  %s MB/s of source\n' "$full" "$(awk -v mb="$SRC_MB" -v s="$full" 'BEGIN{printf "%.0f", mb/s}')"
printf 'herokurds-verify --counts-only: %6s s\n' "$counts"
echo "  $full_out"
echo "row hash over $big (source, one session, best of 3):"
printf '%s' "$hashes"
rm -rf "$W"
