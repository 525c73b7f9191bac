//! TODO(pg): placeholder until its issue lands.
