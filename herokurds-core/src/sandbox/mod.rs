//! Throwaway local servers for tests, benches and `herokurds demo`.
//!
//! Everything herokurds talks to has a real local counterpart here, started
//! on a free loopback port and stopped on drop: PostgreSQL clusters shaped
//! like Heroku Postgres and RDS ([`LocalPostgres`]), a moto server for
//! S3 and Secrets Manager ([`moto`]), and s3s-fs, a faster S3 with fewer
//! operations ([`s3s_fs`]); both S3 servers are a [`LocalS3`]. The Heroku
//! Platform API, which has no local implementation, is emulated by
//! `heroku::emulator`.

#[cfg(feature = "emulator")]
pub mod demo;
mod local_s3;
pub mod moto;
mod postgres;
mod process;
pub mod s3s_fs;
mod tls;
pub mod webapp;

pub use local_s3::{LocalS3, LocalS3Error, LOCAL_S3_REGION};
pub use postgres::{LocalPostgres, PostgresOptions, SandboxError, Shape};
