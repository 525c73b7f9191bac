//! The whole migration as a flat list of numbered, journaled steps.
//!
//! [`plan::Plan`] says what to migrate; [`journal::Journal`] records what
//! has been done so `resume` continues at the first unfinished step and
//! `rollback` knows what to undo.

pub mod journal;
pub mod plan;
pub mod report;

pub use journal::{
    AppLock, Journal, JournalError, RunState, StepId, StepRecord, StepStatus, WorkDir,
};
pub use plan::{Plan, PlanError};
pub use report::Report;
