//! TODO(pulumi): placeholder until its issue lands.
