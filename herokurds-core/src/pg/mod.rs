//! TODO(pg): placeholder until its issue lands.

pub mod catalog;
