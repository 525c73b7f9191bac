//! TODO(transfer): placeholder until its issue lands.
