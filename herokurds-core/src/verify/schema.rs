//! Schema objects described from the catalogs, and compared object by object.
//!
//! Each object is a kind, a qualified name and a flat map of properties
//! rendered by the server itself (`format_type`, `pg_get_indexdef`,
//! `pg_get_constraintdef`, `pg_get_functiondef`, ...) with an empty
//! `search_path`, so the description is independent of OIDs, of the order
//! objects were created in and of `search_path`. Owners and privileges are
//! not described: the transfer restores with `--no-owner --no-acl`, so on
//! the target everything belongs to the RDS user by design.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use super::report::{Detail, Difference};
use crate::pg::catalog::TableFilter;

/// The catalog query; see the comment at its top.
const DESCRIBE_SQL: &str = include_str!("schema.sql");

/// One schema object as described by [`describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaObject {
    /// `table`, `column`, `index`, ...
    pub kind: String,
    /// Qualified, quoted where needed (`public.orders.total`).
    pub name: String,
    /// The table it is, or belongs to (unquoted schema and name), for
    /// `--exclude-table`.
    pub table: Option<(String, String)>,
    /// The same, qualified and quoted as in `name`s.
    pub table_name: Option<String>,
    /// Properties compared one by one.
    pub props: BTreeMap<String, String>,
}

/// Describes every schema object of the database `client` is connected to.
/// The session must have `search_path = ''`.
pub(crate) async fn describe(client: &Client) -> Result<Vec<SchemaObject>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT kind, name, tbl_schema, tbl_name, attrs, \
         CASE WHEN tbl_name IS NOT NULL THEN format('%I.%I', tbl_schema, tbl_name) END \
         FROM ({DESCRIBE_SQL}) s"
    );
    let rows = client.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let tbl_schema: Option<String> = row.get(2);
            let tbl_name: Option<String> = row.get(3);
            let attrs: serde_json::Value = row.get(4);
            let props = match attrs {
                serde_json::Value::Object(map) => map
                    .into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, v)
                    })
                    .collect(),
                _ => BTreeMap::new(),
            };
            SchemaObject {
                kind: row.get(0),
                name: row.get(1),
                table: tbl_schema.zip(tbl_name),
                table_name: row.get(5),
                props,
            }
        })
        .collect())
}

/// What to leave out of the comparison.
pub(crate) struct SchemaFilter<'a> {
    /// Tables not copied: the table and everything that belongs to it.
    pub tables: &'a TableFilter,
    /// Extensions not copied (`--exclude-extension`).
    pub extensions: &'a [String],
}

impl SchemaFilter<'_> {
    fn keeps(&self, o: &SchemaObject) -> bool {
        if let Some((schema, table)) = &o.table {
            if self.tables.excludes(schema, table) {
                return false;
            }
        }
        // herokurds' own change capture (online mode) is not the app's schema.
        if crate::transfer::online::capture::is_capture_object(&o.kind, &o.name) {
            return false;
        }
        !(o.kind == "extension"
            && self
                .extensions
                .iter()
                .any(|e| crate::pg::catalog::quote_ident_as_server(e) == o.name))
    }
}

/// Compares the two descriptions and lists every difference, in kind and
/// name order. Indexes that are invalid on the source (a failed
/// `CREATE INDEX CONCURRENTLY`) are not copied by `pg_dump`; they are left
/// out with a warning.
pub(crate) fn diff(
    source: Vec<SchemaObject>,
    target: Vec<SchemaObject>,
    filter: &SchemaFilter<'_>,
    warnings: &mut Vec<String>,
) -> (usize, Vec<Difference>) {
    let mut invalid_on_source = BTreeSet::new();
    for o in &source {
        if o.kind == "index" && o.props.get("valid").map(String::as_str) == Some("false") {
            invalid_on_source.insert(o.name.clone());
            warnings.push(format!(
                "index {} is invalid on the source (an interrupted CREATE INDEX CONCURRENTLY?); \
                 pg_dump does not copy invalid indexes, so it is not compared",
                o.name
            ));
        }
    }
    let index = |objects: Vec<SchemaObject>| -> BTreeMap<(String, String), SchemaObject> {
        let mut map = BTreeMap::new();
        for o in objects {
            if !filter.keeps(&o) || (o.kind == "index" && invalid_on_source.contains(&o.name)) {
                continue;
            }
            // Names are unique per kind in practice; should two collide,
            // keep both rather than compare one against the wrong other.
            let mut key = (o.kind.clone(), o.name.clone());
            let mut n = 2;
            while map.contains_key(&key) {
                key.1 = format!("{} #{n}", o.name);
                n += 1;
            }
            map.insert(key, o);
        }
        map
    };
    let source = index(source);
    let mut target = index(target);
    let compared = source.len();
    // A table missing on one side is one difference, not one per column,
    // index and constraint.
    let tables = |m: &BTreeMap<(String, String), SchemaObject>| -> BTreeSet<String> {
        m.values()
            .filter_map(|o| o.table.is_some().then(|| o.table_name.clone()).flatten())
            .collect()
    };
    let (src_tables, tgt_tables) = (tables(&source), tables(&target));
    let is_part_of_lone_table = |o: &SchemaObject, other: &BTreeSet<String>| {
        o.kind != "table" && o.table_name.as_ref().is_some_and(|t| !other.contains(t))
    };
    let mut differences = Vec::new();
    for (key, s) in source {
        let Some(t) = target.remove(&key) else {
            if !is_part_of_lone_table(&s, &tgt_tables) {
                differences.push(Difference::new(&s.kind, &s.name, Detail::MissingOnTarget));
            }
            continue;
        };
        let props: BTreeSet<&String> = s.props.keys().chain(t.props.keys()).collect();
        for p in props {
            let (sv, tv) = (s.props.get(p), t.props.get(p));
            if sv != tv {
                differences.push(Difference::new(
                    &s.kind,
                    &s.name,
                    Detail::Property {
                        property: p.clone(),
                        source: sv.cloned(),
                        target: tv.cloned(),
                    },
                ));
            }
        }
    }
    for (_, t) in target {
        if !is_part_of_lone_table(&t, &src_tables) {
            differences.push(Difference::new(&t.kind, &t.name, Detail::ExtraOnTarget));
        }
    }
    differences.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    (compared, differences)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, name: &str, table: Option<&str>, props: &[(&str, &str)]) -> SchemaObject {
        SchemaObject {
            kind: kind.into(),
            name: name.into(),
            table: table.map(|t| ("public".to_string(), t.to_string())),
            table_name: table.map(|t| format!("public.{t}")),
            props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn lines(source: Vec<SchemaObject>, target: Vec<SchemaObject>, excl: &[&str]) -> Vec<String> {
        let patterns = TableFilter::from_patterns(excl.iter().copied()).unwrap();
        let filter = SchemaFilter {
            tables: &patterns,
            extensions: &["pg_stat_statements".to_string()],
        };
        let mut warnings = Vec::new();
        let (_, d) = diff(source, target, &filter, &mut warnings);
        d.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn missing_extra_and_changed_objects_are_each_named() {
        let src = vec![
            obj(
                "index",
                "public.orders_customer_id_idx",
                Some("orders"),
                &[],
            ),
            obj(
                "column",
                "public.orders.total",
                Some("orders"),
                &[("type", "numeric(12,2)")],
            ),
        ];
        let tgt = vec![
            obj(
                "column",
                "public.orders.total",
                Some("orders"),
                &[("type", "numeric(10,2)")],
            ),
            obj("table", "public.extra", Some("extra"), &[]),
        ];
        assert_eq!(
            lines(src, tgt, &[]),
            vec![
                "column public.orders.total: type numeric(12,2) vs numeric(10,2)",
                "index public.orders_customer_id_idx: missing on target",
                "table public.extra: extra on target (not on source)",
            ]
        );
    }

    #[test]
    fn a_property_set_on_one_side_only_is_a_difference() {
        let src = vec![obj("column", "public.t.a", Some("t"), &[("default", "0")])];
        let tgt = vec![obj("column", "public.t.a", Some("t"), &[])];
        assert_eq!(
            lines(src, tgt, &[]),
            vec!["column public.t.a: default 0 vs (none)"]
        );
    }

    #[test]
    fn excluded_tables_and_extensions_are_left_out() {
        let src = vec![
            obj("table", "public.audit_log", Some("audit_log"), &[]),
            obj("index", "public.audit_log_at_idx", Some("audit_log"), &[]),
            obj("extension", "pg_stat_statements", None, &[]),
        ];
        assert!(lines(src, vec![], &["public.audit_*"]).is_empty());
    }

    #[test]
    fn indexes_invalid_on_the_source_are_skipped_with_a_warning() {
        let src = vec![obj("index", "public.i", Some("t"), &[("valid", "false")])];
        let patterns = TableFilter::new();
        let filter = SchemaFilter {
            tables: &patterns,
            extensions: &[],
        };
        let mut warnings = Vec::new();
        let (_, d) = diff(src, vec![], &filter, &mut warnings);
        assert!(d.is_empty());
        assert!(
            warnings[0].contains("index public.i is invalid"),
            "{warnings:?}"
        );
    }

    #[test]
    fn quote_ident_matches_the_server_for_plain_and_odd_names() {
        assert_eq!(
            crate::pg::catalog::quote_ident_as_server("hstore"),
            "hstore"
        );
        assert_eq!(
            crate::pg::catalog::quote_ident_as_server("uuid-ossp"),
            "\"uuid-ossp\""
        );
        assert_eq!(
            crate::pg::catalog::quote_ident_as_server("Mixed"),
            "\"Mixed\""
        );
        assert_eq!(crate::pg::catalog::quote_ident_as_server("1x"), "\"1x\"");
    }
}
