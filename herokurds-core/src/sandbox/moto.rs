//! TODO(moto): the moto server launcher, owned by the AWS issue.
