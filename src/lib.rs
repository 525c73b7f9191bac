//! herokurds: move a Heroku app's Postgres database and S3 assets to AWS RDS.
//!
//! This crate re-exports [`herokurds_core`], where every capability lives;
//! it owns the workspace's examples, benches and integration tests.
#![deny(missing_docs)]

pub use herokurds_core::*;
