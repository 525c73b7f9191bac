//! TODO(verify): placeholder until its issue lands.
