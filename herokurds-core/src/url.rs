//! TODO(url): placeholder until its issue lands.
