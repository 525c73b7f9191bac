//! TODO(heroku): placeholder until its issue lands.
