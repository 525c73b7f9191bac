#!/usr/bin/env bash
# s3s-fs: a multi-threaded Rust S3 server over a directory (a bucket is a
# folder), installed from crates.io into $ROOT/.cache/s3s-fs. The S3 sync
# tests run against it as well as moto (herokurds_testkit::s3s_fs),
# and benches/s3_sync.rs measures against both: moto serves one request at
# a time, which caps every client near the same speed. Idempotent: a no-op
# once the pinned version is there. Building it takes about 2 minutes on an
# idle 2-core machine.
# Runs alone too (from any directory): it sources scripts/lib.sh itself.
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
HEROKURDS_S3S_FS_VERSION=0.14.1
HEROKURDS_S3S_FS_ROOT="$ROOT/.cache/s3s-fs"
if [ -z "${HEROKURDS_S3S_FS:-}" ]; then
  HEROKURDS_S3S_FS="$HEROKURDS_S3S_FS_ROOT/bin/s3s-fs"
  _stamp="$HEROKURDS_S3S_FS_ROOT/.installed-$HEROKURDS_S3S_FS_VERSION"
  if [ ! -f "$_stamp" ] || [ ! -x "$HEROKURDS_S3S_FS" ]; then
    # measured: du -sm .cache/s3s-fs (the binary; the build itself is in a temporary target dir)
    if will_install "s3s-fs $HEROKURDS_S3S_FS_VERSION (cargo install, into .cache/s3s-fs)" 10 \
      "a second, multi-threaded S3 server for the sync tests and the S3 benchmark"; then
      cargo install --quiet --locked --root "$HEROKURDS_S3S_FS_ROOT" \
        "s3s-fs@$HEROKURDS_S3S_FS_VERSION" --features binary >&2
      touch "$_stamp"
    fi
  fi
  unset _stamp
fi
export HEROKURDS_S3S_FS
