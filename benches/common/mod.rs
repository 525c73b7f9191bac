//! What the benches share: where the herokurds binaries are, and how the
//! clusters are set up for timing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use herokurds_testkit::PostgresOptions;

/// A herokurds binary: in `$HEROKURDS_BIN_DIR`, else next to this bench
/// (target/release/deps/compare-HASH -> target/release).
pub fn release_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("HEROKURDS_BIN_DIR").map(PathBuf::from);
    let exe = std::env::current_exe().expect("current exe");
    let bin = dir
        .or_else(|| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .map(|d| d.join(name))
        .expect("a target directory");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p herokurds-cli",
        bin.display()
    );
    bin
}

/// Durable clusters with room to work, like the real services.
pub fn pg_options(pg: PostgresOptions) -> PostgresOptions {
    pg.durable(true)
        .setting("shared_buffers", "256MB")
        .setting("maintenance_work_mem", "256MB")
        .setting("max_wal_size", "2GB")
        .setting("checkpoint_timeout", "15min")
}
