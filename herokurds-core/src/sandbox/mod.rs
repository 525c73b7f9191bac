//! Throwaway local servers for tests, benches and `herokurds demo`.
//!
//! Everything herokurds talks to has a real local counterpart here, started
//! on a free loopback port and stopped on drop: PostgreSQL clusters shaped
//! like Heroku Postgres and RDS ([`LocalPostgres`]), and a moto server for
//! S3 and Secrets Manager ([`moto`]). The Heroku Platform API, which has no
//! local implementation, is emulated by `heroku::emulator`.

pub mod moto;
mod postgres;
mod tls;

pub use postgres::{LocalPostgres, PostgresOptions, SandboxError, Shape};
