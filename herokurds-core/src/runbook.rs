//! TODO(runbook): placeholder until its issue lands.
