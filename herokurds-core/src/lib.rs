//! # herokurds-core
//!
//! The library behind herokurds: everything needed to move a Heroku app's
//! Heroku Postgres database (and its S3 assets) to an AWS RDS PostgreSQL
//! instance, with proof that nothing was lost and a one-command rollback.
//!
//! The binaries in `herokurds-cli` are glue: they parse flags, build the
//! objects of this crate, call one function and render what it reports.
//! This crate never prints; long work reports through [`progress`] and
//! `tracing` events.
//!
//! ## Layout
//! - [`url`]: the typed `DATABASE_URL` (builder, parser, redaction, env snippet).
//! - [`pg`]: connecting over TLS with a diagnosis in words, catalog queries.
//! - [`transfer`]: the streaming, consistent, parallel database copy, and
//!   [`transfer::online`]: copy while the app writes, with trigger capture.
//! - [`verify`]: proof that the target equals the source.
//! - [`heroku`]: the Heroku Platform API client.
//! - [`s3`]: server-side bucket sync; [`cloudfront`]: origins switched to
//!   the new buckets.
//! - [`aws`] and [`pulumi`]: where the RDS endpoint and password come from.
//! - [`smoke`]: page checks before and after the cutover.
//! - [`runbook`]: the whole migration as numbered, journaled steps, and a
//!   rollback that copies the writes made on RDS back to Heroku.
//! - [`progress`]: the event trait the binaries render.
//! - [`fsutil`]: private (0600/0700), atomic file writes and the lock file.
//! - [`retry`]: the one retry policy (transfer, Heroku API).
//! - [`size`]: byte sizes as operators write them (`1GB`).
#![deny(missing_docs)]

pub mod aws;
pub mod cloudfront;
pub mod duration;
pub mod fsutil;
pub mod heroku;
pub mod pg;
pub mod progress;
pub mod pulumi;
pub mod retry;
pub mod runbook;
pub mod s3;
pub mod size;
pub mod smoke;
pub mod transfer;
pub mod url;
pub mod verify;
