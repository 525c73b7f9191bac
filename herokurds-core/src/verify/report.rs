//! What a verification found: the differences, object by object, and the
//! per-table tallies behind them.
//!
//! A [`VerifyReport`] is plain data (serialisable to JSON); the binaries
//! render it. Each [`Difference`] names one object and says what differs, and
//! its `Display` is the one line a person reads:
//! `index public.orders_customer_id_idx: missing on target`.

use std::fmt;

use serde::Serialize;

/// Which database a fact comes from (the transfer's [`Side`](crate::transfer::Side)).
pub use crate::transfer::Side;

/// One thing that is not the same on both sides, or could not be checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The kind of object: `table`, `column`, `index`, `constraint`,
    /// `sequence`, `large object`, ...
    pub kind: String,
    /// The object's qualified name as it would be written in SQL, e.g.
    /// `public.orders` or `public.orders.total`.
    pub name: String,
    /// What differs (flattened into this object in JSON, tagged `what`).
    #[serde(flatten)]
    pub detail: Detail,
}

/// What differs about an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Detail {
    /// The object exists on the source only.
    MissingOnTarget,
    /// The object exists on the target only.
    ExtraOnTarget,
    /// One property of the object differs.
    Property {
        /// The property (`type`, `definition`, `not null`, `last_value`, ...).
        property: String,
        /// Its value on the source (`None`: not set there).
        source: Option<String>,
        /// Its value on the target (`None`: not set there).
        target: Option<String>,
    },
    /// A table holds a different number of rows.
    RowCount {
        /// Rows on the source.
        source: u64,
        /// Rows on the target.
        target: u64,
    },
    /// A table holds as many rows on both sides, but not the same ones.
    Content {
        /// The content checksum on the source.
        source: String,
        /// The content checksum on the target.
        target: String,
    },
    /// The object could not be checked in full, so it is not known to be
    /// equal; `reason` says why and what to do.
    NotVerified {
        /// The side on which it could not be read.
        side: Side,
        /// Why, and how to fix it.
        reason: String,
    },
}

impl Difference {
    /// A difference of `kind` `name`.
    pub fn new(kind: impl Into<String>, name: impl Into<String>, detail: Detail) -> Self {
        Difference {
            kind: kind.into(),
            name: name.into(),
            detail,
        }
    }
}

/// Longest property value shown in full on a difference's line; longer
/// ones (function and view definitions) are shown around the first place
/// they differ.
const SHOWN_IN_FULL: usize = 120;

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.kind, self.name)?;
        match &self.detail {
            Detail::MissingOnTarget => f.write_str("missing on target"),
            Detail::ExtraOnTarget => f.write_str("extra on target (not on source)"),
            Detail::Property {
                property,
                source,
                target,
            } => {
                let show = |v: &Option<String>| match v {
                    None => "(none)".to_string(),
                    Some(s) => s.clone(),
                };
                let (s, t) = (show(source), show(target));
                if s.len() <= SHOWN_IN_FULL && t.len() <= SHOWN_IN_FULL && !s.contains('\n') {
                    write!(f, "{property} {s} vs {t}")
                } else {
                    let (line, sl, tl) = first_differing_line(&s, &t);
                    write!(
                        f,
                        "{property} differs at line {line}: {:?} vs {:?}",
                        clip(sl),
                        clip(tl)
                    )
                }
            }
            Detail::RowCount { source, target } => {
                write!(f, "row count {source} on source vs {target} on target")
            }
            Detail::Content { source, target } => write!(
                f,
                "content differs with equal row counts (checksum {source} vs {target})"
            ),
            Detail::NotVerified { side, reason } => write!(f, "not verified on {side}: {reason}"),
        }
    }
}

/// The 1-based number of the first line that differs, and that line on each side.
fn first_differing_line<'a>(a: &'a str, b: &'a str) -> (usize, &'a str, &'a str) {
    let mut la = a.lines();
    let mut lb = b.lines();
    let mut n = 1;
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => n += 1,
            (x, y) => return (n, x.unwrap_or(""), y.unwrap_or("")),
        }
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= SHOWN_IN_FULL {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(SHOWN_IN_FULL).collect();
        c.push('…');
        c
    }
}

/// A table's tally on one side: rows and, unless counts only, the content
/// checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Exact number of rows.
    pub rows: u64,
    /// Order- and layout-independent content checksum (16 hex digits), or
    /// `None` with `counts_only`.
    pub checksum: Option<String>,
    /// Bytes of the table's main fork that were read.
    pub bytes: u64,
}

/// How one table compared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableResult {
    /// The table's qualified name (`public.orders`).
    pub table: String,
    /// Its tally on the source, `None` if it could not be read.
    pub source: Option<Tally>,
    /// Its tally on the target, `None` if it could not be read.
    pub target: Option<Tally>,
    /// Seconds from the first slice started to the last finished, on
    /// whichever side took longer.
    pub seconds: f64,
    /// Whether both tallies were read and are equal.
    pub equal: bool,
}

/// The large objects (`pg_largeobject`) on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LargeObjectsResult {
    /// How many on the source.
    pub source: u64,
    /// How many on the target.
    pub target: u64,
    /// Whether every large object exists on both sides with the same content.
    pub equal: bool,
}

/// Everything a verification found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Every difference, schema objects first, then data, sequences and
    /// large objects. Empty when the databases are identical.
    pub differences: Vec<Difference>,
    /// Per-table tallies, in table name order.
    pub tables: Vec<TableResult>,
    /// Sequences whose values were compared.
    pub sequences: usize,
    /// Large objects, when either side has any.
    pub large_objects: Option<LargeObjectsResult>,
    /// Schema objects compared (on the source).
    pub schema_objects: usize,
    /// Things worth knowing that are not differences (e.g. the source was
    /// not read on a fixed snapshot and may be changing).
    pub warnings: Vec<String>,
    /// Whether only row counts were compared (no content checksums).
    pub counts_only: bool,
    /// The source snapshot the check ran on, when one was given.
    pub source_snapshot: Option<String>,
    /// Wall-clock seconds the verification took.
    pub seconds: f64,
    /// Bytes of table data read on the source and the target together.
    pub bytes_read: u64,
}

impl VerifyReport {
    /// True when nothing differs and everything could be checked.
    pub fn is_identical(&self) -> bool {
        self.differences.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(p: &str, s: &str, t: &str) -> Difference {
        Difference::new(
            "column",
            "public.orders.total",
            Detail::Property {
                property: p.into(),
                source: Some(s.into()),
                target: Some(t.into()),
            },
        )
    }

    #[test]
    fn lines_name_the_object_and_what_differs() {
        let d = Difference::new(
            "index",
            "public.orders_customer_id_idx",
            Detail::MissingOnTarget,
        );
        assert_eq!(
            d.to_string(),
            "index public.orders_customer_id_idx: missing on target"
        );
        assert_eq!(
            prop("type", "numeric(12,2)", "numeric(10,2)").to_string(),
            "column public.orders.total: type numeric(12,2) vs numeric(10,2)"
        );
        let d = Difference::new(
            "table",
            "public.orders",
            Detail::RowCount {
                source: 1000,
                target: 999,
            },
        );
        assert_eq!(
            d.to_string(),
            "table public.orders: row count 1000 on source vs 999 on target"
        );
    }

    #[test]
    fn long_definitions_show_the_first_differing_line() {
        let a = format!("CREATE FUNCTION f()\n{}\n RETURN 1", "x".repeat(200));
        let b = format!("CREATE FUNCTION f()\n{}\n RETURN 2", "x".repeat(200));
        let line = prop("definition", &a, &b).to_string();
        assert!(
            line.ends_with("definition differs at line 3: \"RETURN 1\" vs \"RETURN 2\""),
            "{line}"
        );
    }

    #[test]
    fn json_tags_the_kind_of_difference() {
        let v = serde_json::to_value(Difference::new(
            "sequence",
            "public.s",
            Detail::Property {
                property: "last_value".into(),
                source: Some("41".into()),
                target: Some("42".into()),
            },
        ))
        .unwrap();
        assert_eq!(v["what"], "property");
        assert_eq!(v["detail"], serde_json::Value::Null);
        assert_eq!(v["kind"], "sequence");
    }
}
