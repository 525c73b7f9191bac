//! TODO(aws): placeholder until its issue lands.
