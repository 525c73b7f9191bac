//! # herokurds-testkit
//!
//! Throwaway local servers for herokurds' tests, benches and `herokurds
//! demo`. Not published: a production build of herokurds-cli pulls it in
//! only through its `demo` feature.
//!
//! Everything herokurds talks to has a real local counterpart here, started
//! on a free loopback port and stopped on drop: PostgreSQL clusters shaped
//! like Heroku Postgres and RDS ([`LocalPostgres`]), a moto server for
//! S3 and Secrets Manager ([`moto`]), and s3s-fs, a faster S3 with fewer
//! operations ([`s3s_fs`]); both S3 servers are a [`LocalS3`]. The Heroku
//! Platform API, which has no local implementation, is emulated by
//! [`emulator`]. [`demo`] starts them all as one migration's world.
#![deny(missing_docs)]

pub mod demo;
pub mod emulator;
mod local_s3;
pub mod moto;
mod postgres;
mod process;
pub mod pulumi;
pub mod s3s_fs;
mod tls;
pub mod webapp;

pub use local_s3::{LocalS3, LocalS3Error, LOCAL_S3_REGION};
pub use postgres::{LocalPostgres, PostgresOptions, SandboxError, Shape};
pub use process::send_signal;
