//! TODO(smoke): placeholder until its issue lands.
