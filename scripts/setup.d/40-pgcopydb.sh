#!/usr/bin/env bash
# pgcopydb: the performance anchor the transfer benchmark compares against
# (benches/compare.rs, method c).
# Runs alone too (from any directory): it sources scripts/lib.sh itself.
# shellcheck source=../lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
apt_install pgcopydb
