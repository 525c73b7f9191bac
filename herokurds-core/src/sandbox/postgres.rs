//! TODO: LocalPostgres (in progress on main).
use std::fmt;
/// Placeholder.
pub struct LocalPostgres;
/// Placeholder.
pub struct PostgresOptions;
/// Placeholder.
pub enum Shape {}
/// Placeholder.
#[derive(Debug)]
pub struct SandboxError;
impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sandbox")
    }
}
