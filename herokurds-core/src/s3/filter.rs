//! `--exclude`/`--include` with `aws s3` semantics.
//!
//! Every key is included to begin with; the filters are applied in the order
//! given and the last one that matches decides. Patterns are matched against
//! the key relative to the location (after the prefix), as shell globs where
//! `*` also matches `/` (Python's `fnmatch`, which the aws CLI uses): `*`,
//! `?`, `[abc]`, `[!abc]`. Filters apply to both sides, so an excluded
//! destination key is never deleted.

use globset::{GlobBuilder, GlobMatcher};

use super::S3Error;

/// Whether a rule keeps or drops the keys it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilterKind {
    /// `--exclude`: drop matching keys.
    Exclude,
    /// `--include`: keep matching keys (undoing an earlier exclude).
    Include,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: FilterKind,
    pattern: String,
    matcher: GlobMatcher,
}

/// An ordered list of include/exclude globs.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    rules: Vec<Rule>,
}

impl Filters {
    /// No filters: every key is included.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an `--exclude` rule.
    pub fn exclude(self, pattern: &str) -> Result<Self, S3Error> {
        self.push(FilterKind::Exclude, pattern)
    }

    /// Appends an `--include` rule.
    pub fn include(self, pattern: &str) -> Result<Self, S3Error> {
        self.push(FilterKind::Include, pattern)
    }

    /// Appends a rule of either kind.
    pub fn push(mut self, kind: FilterKind, pattern: &str) -> Result<Self, S3Error> {
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(false)
            .backslash_escape(false)
            .empty_alternates(true)
            .build()
            .map_err(|e| S3Error::InvalidFilter {
                pattern: pattern.to_string(),
                reason: e.kind().to_string(),
            })?
            .compile_matcher();
        self.rules.push(Rule {
            kind,
            pattern: pattern.to_string(),
            matcher,
        });
        Ok(self)
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in order, as `(kind, pattern)`.
    pub fn rules(&self) -> impl Iterator<Item = (FilterKind, &str)> {
        self.rules.iter().map(|r| (r.kind, r.pattern.as_str()))
    }

    /// Whether a key (relative to its location) takes part in the sync.
    pub fn is_included(&self, relative_key: &str) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|r| r.matcher.is_match(relative_key))
            .is_none_or(|r| r.kind == FilterKind::Include)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_filters_include_everything() {
        assert!(Filters::new().is_included("any/key"));
    }

    #[test]
    fn later_filters_win_like_aws() {
        let f = Filters::new()
            .exclude("*")
            .unwrap()
            .include("*.jpg")
            .unwrap();
        assert!(f.is_included("photos/2020/a.jpg"));
        assert!(!f.is_included("photos/a.png"));
        let f = Filters::new()
            .include("*.jpg")
            .unwrap()
            .exclude("*")
            .unwrap();
        assert!(!f.is_included("a.jpg"));
    }

    #[test]
    fn star_crosses_slashes_and_patterns_match_the_whole_key() {
        let f = Filters::new().exclude("cache/*").unwrap();
        assert!(!f.is_included("cache/a/b/c"));
        assert!(f.is_included("static/cache/a"));
        let f = Filters::new().exclude("?.txt").unwrap();
        assert!(!f.is_included("a.txt"));
        assert!(f.is_included("ab.txt"));
        let f = Filters::new().exclude("[!a]*").unwrap();
        assert!(f.is_included("apple"));
        assert!(!f.is_included("banana"));
    }

    #[test]
    fn backslash_is_a_plain_character() {
        let f = Filters::new().exclude(r"a\*").unwrap();
        assert!(!f.is_included(r"a\b"));
    }

    #[test]
    fn a_bad_pattern_is_named() {
        let err = Filters::new().exclude("[a").unwrap_err().to_string();
        assert!(err.contains("\"[a\""), "{err}");
    }
}
