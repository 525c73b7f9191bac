//! What `herokurds-s3-sync` reads besides plain flags: the include and
//! exclude filters, in command-line order.

use clap::ArgMatches;
use herokurds_core::s3::{FilterKind, Filters, S3Error};

/// The `--exclude`/`--include` rules in the order they were given (the
/// last matching rule wins, so order matters across both flags).
pub fn ordered_filters(matches: &ArgMatches) -> Result<Filters, S3Error> {
    let mut rules: Vec<(usize, FilterKind, String)> = Vec::new();
    for (id, kind) in [
        ("exclude", FilterKind::Exclude),
        ("include", FilterKind::Include),
    ] {
        let values = matches.get_many::<String>(id).into_iter().flatten();
        let indices = matches.indices_of(id).into_iter().flatten();
        rules.extend(indices.zip(values).map(|(i, v)| (i, kind, v.clone())));
    }
    rules.sort_by_key(|(i, _, _)| *i);
    rules
        .into_iter()
        .try_fold(Filters::new(), |f, (_, kind, pattern)| {
            f.push(kind, &pattern)
        })
}
