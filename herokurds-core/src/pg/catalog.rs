//! What a database holds: the inventory of tables, sequences and large
//! objects that a copy must reproduce and a verification must compare.
//!
//! The transfer and the verification both start from the same question —
//! which relations hold user data, which of their columns can be written
//! back, how big they are, and would this connection see every row — so the
//! answer lives here, once, free of copy-specific decisions. Everything is
//! read from the system catalogs through any [`GenericClient`], so it can
//! run inside a transaction that has imported a snapshot and describe
//! exactly the state being copied.
//!
//! What counts as user data:
//! - tables (`relkind` `r`) and partitioned tables (`p`, which hold no rows
//!   themselves; their leaf partitions do) in every schema except
//!   `pg_catalog`, `information_schema`, `pg_toast` and temporary schemas;
//! - not relations that belong to an extension (`CREATE EXTENSION`
//!   recreates them), not foreign tables (their rows live elsewhere), not
//!   materialized views (refreshed, not copied), not temporary tables;
//! - sequences with the same rules;
//! - every large object.
//!
//! [`TableFilter`] holds the user's exclusion patterns; an excluded table is
//! still listed (with [`TableInfo::excluded`] set) so callers can report it.

use std::fmt;

use tokio_postgres::GenericClient;

/// Schemas that never hold user data: the system's, and herokurds' own
/// change capture (online mode), which is never copied.
const SYSTEM_SCHEMAS_SQL: &str =
    "n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'herokurds_capture') \
     AND n.nspname !~ '^pg_(toast_)?temp_'";

/// Why the inventory could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// A catalog query failed.
    #[error("reading the catalog ({what}): {message}")]
    Query {
        /// What was being read, e.g. `tables` or `sequence "public"."s"`.
        what: String,
        /// The server's (or driver's) message.
        message: String,
        /// Whether the connection was lost (as opposed to a query error).
        connection_lost: bool,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An exclusion pattern is not a valid glob.
    #[error("invalid table pattern `{pattern}`: {message}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        message: String,
    },
}

impl CatalogError {
    /// Whether the connection was lost while reading (worth retrying on a
    /// new connection), as opposed to a query the server refused.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            CatalogError::Query {
                connection_lost: true,
                ..
            }
        )
    }

    fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> CatalogError {
        let what = what.into();
        move |e| CatalogError::Query {
            what,
            message: match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None => e.to_string(),
            },
            connection_lost: e.is_closed() || e.as_db_error().is_none(),
            source: Box::new(e),
        }
    }
}

/// Quotes an identifier for SQL: `my "t"` becomes `"my ""t"""`. Always
/// quotes, so mixed case and reserved words survive.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Quotes an identifier the way the server's `quote_ident()` does, for
/// names compared with catalog output: unquoted when all lower-case
/// letters, digits and underscores and not starting with a digit, else
/// like [`quote_ident`]. (Reserved words are not known here; they are rare
/// as extension names.)
pub(crate) fn quote_ident_as_server(name: &str) -> String {
    let plain = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        quote_ident(name)
    }
}

/// The OID of the system catalog `pg_class` (tables, indexes, ...), as
/// `pg_restore --list` writes it in a TOC entry's class.
pub const PG_CLASS_OID: u32 = 1259;
/// The OID of the system catalog `pg_constraint`.
pub const PG_CONSTRAINT_OID: u32 = 2606;
/// The OID of the system catalog `pg_trigger`.
pub const PG_TRIGGER_OID: u32 = 2620;

/// Quotes a string literal for SQL: `it's` becomes `'it''s'`.
/// (Assumes `standard_conforming_strings = on`, the default since 9.1.)
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Tables whose data the user asked not to copy: glob patterns (`*`, `?`,
/// `[abc]`) matched against `schema.table` when the pattern contains a dot,
/// else against the bare table name in any schema. Matching is on the
/// unquoted names and is case-sensitive.
#[derive(Debug, Clone, Default)]
pub struct TableFilter {
    patterns: Vec<String>,
    qualified: Option<globset::GlobSet>,
    bare: Option<globset::GlobSet>,
}

impl TableFilter {
    /// A filter that excludes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A filter excluding every table matched by one of `patterns`.
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, CatalogError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut qualified = globset::GlobSetBuilder::new();
        let mut bare = globset::GlobSetBuilder::new();
        let (mut any_q, mut any_b) = (false, false);
        let mut all = Vec::new();
        for p in patterns {
            let p: String = p.into();
            let glob = globset::GlobBuilder::new(&p)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| CatalogError::Pattern {
                    pattern: p.clone(),
                    message: e.kind().to_string(),
                })?;
            if p.contains('.') {
                qualified.add(glob);
                any_q = true;
            } else {
                bare.add(glob);
                any_b = true;
            }
            all.push(p);
        }
        let build = |b: globset::GlobSetBuilder, any: bool| -> Result<_, CatalogError> {
            if !any {
                return Ok(None);
            }
            b.build().map(Some).map_err(|e| CatalogError::Pattern {
                pattern: all.join(", "),
                message: e.to_string(),
            })
        };
        Ok(TableFilter {
            qualified: build(qualified, any_q)?,
            bare: build(bare, any_b)?,
            patterns: all,
        })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the table `schema.name` is excluded.
    pub fn excludes(&self, schema: &str, name: &str) -> bool {
        self.bare.as_ref().is_some_and(|g| g.is_match(name))
            || self
                .qualified
                .as_ref()
                .is_some_and(|g| g.is_match(format!("{schema}.{name}")))
    }
}

/// What kind of table a [`TableInfo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TableKind {
    /// An ordinary heap table (`relkind = 'r'`), including leaf partitions
    /// and inheritance parents: it holds rows of its own.
    Ordinary,
    /// A partitioned table (`relkind = 'p'`): it holds no rows; its leaf
    /// partitions, listed separately, do.
    Partitioned,
}

/// A column that can be written back with `COPY ... FROM`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Column {
    /// The column's name, unquoted.
    pub name: String,
    /// Its type as `format_type` spells it, e.g. `numeric(12,2)`.
    pub type_name: String,
    /// Its position (`attnum`); dropped columns leave gaps.
    pub attnum: i16,
    /// The type's oid on this server.
    pub type_oid: u32,
    /// Whether `COPY ... (FORMAT binary)` output of this column can be
    /// read by another server: false for types without binary I/O,
    /// composite types and arrays of non-built-in types (their binary form
    /// embeds this server's type oids, which the reader checks), also
    /// behind domains.
    pub binary_portable: bool,
}

/// One table of the inventory.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct TableInfo {
    /// Schema name, unquoted.
    pub schema: String,
    /// Table name, unquoted.
    pub name: String,
    /// The table's oid on this server.
    pub oid: u32,
    /// Ordinary or partitioned.
    pub kind: TableKind,
    /// A partition of a partitioned table (`relispartition`).
    pub is_partition: bool,
    /// An ordinary table that other tables inherit from (`INHERITS`): its
    /// own rows must be read with `ONLY`.
    pub is_inheritance_parent: bool,
    /// `UNLOGGED`.
    pub unlogged: bool,
    /// The owning role.
    pub owner: String,
    /// Columns to copy, in `attnum` order: not dropped, not generated.
    /// May be empty (a zero-column table can still hold rows).
    pub columns: Vec<Column>,
    /// Number of stored generated columns left out of [`columns`](Self::columns).
    pub generated_columns: usize,
    /// Heap size in bytes (`pg_relation_size`, main fork).
    pub heap_bytes: i64,
    /// Heap plus TOAST in bytes (`pg_table_size`, no indexes): what a copy moves.
    pub table_bytes: i64,
    /// Heap size in blocks (`heap_bytes / block_size`): the range of `ctid`
    /// block numbers, for splitting a copy.
    pub heap_blocks: i64,
    /// The planner's row estimate (`reltuples`); `None` if never analyzed.
    pub estimated_rows: Option<i64>,
    /// `ENABLE ROW LEVEL SECURITY` is set (`relrowsecurity`).
    pub row_security: bool,
    /// `FORCE ROW LEVEL SECURITY` is set (`relforcerowsecurity`).
    pub force_row_security: bool,
    /// Whether this connection's role would see only the rows that policies
    /// let through: row security is on, the role cannot bypass it, and it
    /// is not the owner or the owner is forced. A copy that reads such a
    /// table as is would silently copy a subset.
    pub rows_hidden_by_rls: bool,
    /// Whether this connection's role may `SELECT` from the table.
    pub readable: bool,
    /// Matched by the [`TableFilter`]: its data is not to be copied.
    pub excluded: bool,
}

impl TableInfo {
    /// `"schema"."name"`, quoted for SQL.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Whether the table stores rows of its own (partitioned tables do not).
    pub fn holds_rows(&self) -> bool {
        self.kind == TableKind::Ordinary
    }

    /// Whether every copyable column's binary COPY form can be read by
    /// another server (see [`Column::binary_portable`]).
    pub fn binary_portable(&self) -> bool {
        self.columns.iter().all(|c| c.binary_portable)
    }

    /// The copyable columns as a quoted, comma-separated list (empty for a
    /// zero-column table).
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for TableInfo {
    /// `schema.name`, unquoted, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One sequence and its state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SequenceInfo {
    /// Schema name, unquoted.
    pub schema: String,
    /// Sequence name, unquoted.
    pub name: String,
    /// The sequence's oid on this server.
    pub oid: u32,
    /// `last_value` as stored. Sequences are not transactional: this is the
    /// value when read, whatever snapshot the reading transaction uses.
    pub last_value: i64,
    /// `is_called`: whether `nextval` returns `last_value + increment`
    /// (true) or `last_value` itself (false, e.g. never called).
    pub is_called: bool,
    /// The data type, e.g. `bigint`.
    pub data_type: String,
    /// The increment (negative for descending sequences).
    pub increment: i64,
    /// `MINVALUE`.
    pub min_value: i64,
    /// `MAXVALUE`.
    pub max_value: i64,
    /// `START`.
    pub start_value: i64,
    /// `CYCLE`.
    pub cycle: bool,
    /// The column owning it (`OWNED BY` or identity), as `table.column`
    /// unquoted, if any.
    pub owned_by: Option<String>,
    /// Whether it backs an identity column.
    pub identity: bool,
}

impl SequenceInfo {
    /// `"schema"."name"`, quoted for SQL.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl fmt::Display for SequenceInfo {
    /// `schema.name`, unquoted, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// One large object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LargeObject {
    /// Its oid (which applications store in their own columns).
    pub oid: u32,
    /// The owning role.
    pub owner: String,
}

/// The connecting role, as far as reading rows is concerned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RoleInfo {
    /// `current_user`.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolbypassrls`.
    pub bypass_rls: bool,
}

impl RoleInfo {
    /// Whether row-level security never filters what this role reads.
    pub fn bypasses_rls(&self) -> bool {
        self.superuser || self.bypass_rls
    }
}

/// Everything a copy must reproduce, as seen by one connection.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Inventory {
    /// The connecting role.
    pub role: RoleInfo,
    /// Tables, ordered by schema then name; excluded ones flagged, not left out.
    pub tables: Vec<TableInfo>,
    /// Sequences, ordered by schema then name.
    pub sequences: Vec<SequenceInfo>,
    /// Large objects, ordered by oid.
    pub large_objects: Vec<LargeObject>,
}

impl Inventory {
    /// Tables whose rows are to be copied: ordinary tables not excluded.
    pub fn tables_to_copy(&self) -> impl Iterator<Item = &TableInfo> {
        self.tables.iter().filter(|t| t.holds_rows() && !t.excluded)
    }

    /// Tables to copy that this role would read only partly because of
    /// row-level security.
    pub fn tables_hidden_by_rls(&self) -> impl Iterator<Item = &TableInfo> {
        self.tables_to_copy().filter(|t| t.rows_hidden_by_rls)
    }

    /// Total `table_bytes` of the tables to copy.
    pub fn bytes_to_copy(&self) -> i64 {
        self.tables_to_copy().map(|t| t.table_bytes).sum()
    }

    /// Finds a table by unquoted schema and name.
    pub fn table(&self, schema: &str, name: &str) -> Option<&TableInfo> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }
}

/// Reads the whole inventory: role, tables, sequences, large objects.
pub async fn inventory(
    client: &impl GenericClient,
    filter: &TableFilter,
) -> Result<Inventory, CatalogError> {
    Ok(Inventory {
        role: role(client).await?,
        tables: tables(client, filter).await?,
        sequences: sequences(client).await?,
        large_objects: large_objects(client).await?,
    })
}

/// The connecting role's RLS-relevant attributes.
pub async fn role(client: &impl GenericClient) -> Result<RoleInfo, CatalogError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(CatalogError::query("the current role"))?;
    Ok(RoleInfo {
        name: row.get(0),
        superuser: row.get(1),
        bypass_rls: row.get(2),
    })
}

/// Every user table (ordinary and partitioned), with columns, sizes and
/// row-security facts, ordered by schema and name.
pub async fn tables(
    client: &impl GenericClient,
    filter: &TableFilter,
) -> Result<Vec<TableInfo>, CatalogError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.oid, c.relkind::text, c.relispartition,
                EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) AND c.relkind = 'r',
                c.relpersistence = 'u', c.relowner::regrole::text,
                pg_relation_size(c.oid), pg_table_size(c.oid),
                pg_relation_size(c.oid) / current_setting('block_size')::bigint,
                c.reltuples::float8, c.relrowsecurity, c.relforcerowsecurity,
                c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls)
                  AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE')),
                has_table_privilege(c.oid, 'SELECT'),
                coalesce(array_agg(a.attname::text ORDER BY a.attnum)
                         FILTER (WHERE a.attnum IS NOT NULL AND a.attgenerated = ''), '{{}}'),
                coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
                         FILTER (WHERE a.attnum IS NOT NULL AND a.attgenerated = ''), '{{}}'),
                coalesce(array_agg(a.attnum ORDER BY a.attnum)
                         FILTER (WHERE a.attnum IS NOT NULL AND a.attgenerated = ''), '{{}}'),
                count(a.attnum) FILTER (WHERE a.attgenerated <> ''),
                coalesce(array_agg(a.atttypid ORDER BY a.attnum)
                         FILTER (WHERE a.attnum IS NOT NULL AND a.attgenerated = ''), '{{}}')
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_roles r ON r.rolname = current_user
         LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relkind IN ('r', 'p') AND c.relpersistence IN ('p', 'u')
           AND {SYSTEM_SCHEMAS_SQL}
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                             AND d.deptype = 'e')
         GROUP BY n.nspname, c.relname, c.oid, r.rolsuper, r.rolbypassrls
         ORDER BY n.nspname, c.relname"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(CatalogError::query("tables"))?;
    let type_facts = type_facts(client).await?;
    Ok(rows
        .iter()
        .map(|row| {
            let schema: String = row.get(0);
            let name: String = row.get(1);
            let relkind: String = row.get(3);
            let names: Vec<String> = row.get(16);
            let types: Vec<String> = row.get(17);
            let attnums: Vec<i16> = row.get(18);
            let reltuples: f64 = row.get(11);
            let generated: i64 = row.get(19);
            let type_oids: Vec<u32> = row.get(20);
            TableInfo {
                excluded: filter.excludes(&schema, &name),
                oid: row.get(2),
                kind: if relkind == "p" {
                    TableKind::Partitioned
                } else {
                    TableKind::Ordinary
                },
                is_partition: row.get(4),
                is_inheritance_parent: row.get(5),
                unlogged: row.get(6),
                owner: row.get(7),
                heap_bytes: row.get(8),
                table_bytes: row.get(9),
                heap_blocks: row.get(10),
                estimated_rows: (reltuples >= 0.0).then_some(reltuples as i64),
                row_security: row.get(12),
                force_row_security: row.get(13),
                rows_hidden_by_rls: row.get(14),
                readable: row.get(15),
                columns: names
                    .into_iter()
                    .zip(types)
                    .zip(attnums)
                    .zip(type_oids)
                    .map(|(((name, type_name), attnum), type_oid)| Column {
                        name,
                        type_name,
                        attnum,
                        type_oid,
                        binary_portable: binary_portable(type_oid, &type_facts),
                    })
                    .collect(),
                generated_columns: generated as usize,
                schema,
                name,
            }
        })
        .collect())
}

/// What decides whether a type's binary COPY form travels between servers.
struct TypeFacts {
    typtype: u8,
    basetype: u32,
    elem: u32,
    is_array: bool,
    binary_io: bool,
}

/// The first oid a user object can get (`FirstNormalObjectId`): types
/// below it are built in and have the same oid on every server.
const FIRST_NORMAL_OID: u32 = 16384;

async fn type_facts(
    client: &impl GenericClient,
) -> Result<std::collections::HashMap<u32, TypeFacts>, CatalogError> {
    let rows = client
        .query(
            "SELECT oid, typtype::text, typbasetype, typelem, typlen = -1 AND typelem <> 0,
                    typsend <> 0 AND typreceive <> 0
             FROM pg_type",
            &[],
        )
        .await
        .map_err(CatalogError::query("types"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let typtype: String = r.get(1);
            (
                r.get(0),
                TypeFacts {
                    typtype: typtype.bytes().next().unwrap_or(b'b'),
                    basetype: r.get(2),
                    elem: r.get(3),
                    is_array: r.get(4),
                    binary_io: r.get(5),
                },
            )
        })
        .collect())
}

/// See [`Column::binary_portable`].
fn binary_portable(oid: u32, types: &std::collections::HashMap<u32, TypeFacts>) -> bool {
    // Domains (possibly nested) copy as their base type.
    let resolve = |mut oid: u32| {
        for _ in 0..32 {
            let t = types.get(&oid)?;
            if t.typtype != b'd' {
                return Some((oid, t));
            }
            oid = t.basetype;
        }
        None
    };
    let Some((_, t)) = resolve(oid) else {
        return false;
    };
    if !t.binary_io || t.typtype == b'c' {
        return false;
    }
    if t.is_array {
        let Some(e) = types.get(&t.elem) else {
            return false;
        };
        return t.elem < FIRST_NORMAL_OID && e.typtype != b'c' && e.binary_io;
    }
    true
}

/// Every user sequence with its current state, ordered by schema and name.
///
/// Reads each sequence's `last_value` and `is_called` directly (the
/// `pg_sequences` view hides `is_called`), which needs `SELECT` on it.
pub async fn sequences(client: &impl GenericClient) -> Result<Vec<SequenceInfo>, CatalogError> {
    let sql = format!(
        "SELECT n.nspname::text, c.relname::text, c.oid, format_type(s.seqtypid, NULL),
                s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcycle,
                (SELECT format('%s.%s', t.relname, a.attname)
                   FROM pg_depend d
                   JOIN pg_class t ON t.oid = d.refobjid
                   JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                    AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                  LIMIT 1),
                EXISTS (SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                           AND d.deptype = 'i')
         FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_sequence s ON s.seqrelid = c.oid
         WHERE c.relkind = 'S' AND c.relpersistence IN ('p', 'u')
           AND {SYSTEM_SCHEMAS_SQL}
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                             AND d.deptype = 'e')
         ORDER BY n.nspname, c.relname"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(CatalogError::query("sequences"))?;
    let mut seqs: Vec<SequenceInfo> = rows
        .iter()
        .map(|row| SequenceInfo {
            schema: row.get(0),
            name: row.get(1),
            oid: row.get(2),
            data_type: row.get(3),
            increment: row.get(4),
            min_value: row.get(5),
            max_value: row.get(6),
            start_value: row.get(7),
            cycle: row.get(8),
            owned_by: row.get(9),
            identity: row.get(10),
            last_value: 0,
            is_called: false,
        })
        .collect();
    // One round trip per 200 sequences.
    for chunk in seqs.chunks_mut(200) {
        let sql = chunk
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "SELECT {i}, last_value, is_called FROM {}",
                    s.qualified_name()
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let what = if chunk.len() == 1 {
            format!("sequence {}", chunk[0])
        } else {
            format!(
                "sequences {} .. {}",
                chunk[0],
                chunk.last().expect("chunks are never empty")
            )
        };
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(CatalogError::query(what))?;
        for row in rows {
            let i: i32 = row.get(0);
            let s = &mut chunk[i as usize];
            s.last_value = row.get(1);
            s.is_called = row.get(2);
        }
    }
    Ok(seqs)
}

/// Every large object's oid and owner, ordered by oid.
pub async fn large_objects(client: &impl GenericClient) -> Result<Vec<LargeObject>, CatalogError> {
    let rows = client
        .query(
            "SELECT oid, lomowner::regrole::text FROM pg_largeobject_metadata ORDER BY oid",
            &[],
        )
        .await
        .map_err(CatalogError::query("large objects"))?;
    Ok(rows
        .iter()
        .map(|r| LargeObject {
            oid: r.get(0),
            owner: r.get(1),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes_case_and_reserved_words() {
        assert_eq!(quote_ident("order"), "\"order\"");
        assert_eq!(quote_ident("My \"T\""), "\"My \"\"T\"\"\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn bare_patterns_match_names_in_any_schema() {
        let f = TableFilter::from_patterns(["audit_*"]).unwrap();
        assert!(f.excludes("public", "audit_log"));
        assert!(f.excludes("other", "audit_2024"));
        assert!(!f.excludes("public", "orders"));
    }

    #[test]
    fn dotted_patterns_match_schema_and_name() {
        let f = TableFilter::from_patterns(["logs.*", "public.big?"]).unwrap();
        assert!(f.excludes("logs", "anything"));
        assert!(f.excludes("public", "big1"));
        assert!(!f.excludes("public", "big10"));
        assert!(!f.excludes("public", "anything"));
        assert_eq!(f.patterns(), ["logs.*", "public.big?"]);
    }

    #[test]
    fn empty_filter_excludes_nothing_and_bad_globs_are_named() {
        assert!(!TableFilter::new().excludes("public", "t"));
        let err = TableFilter::from_patterns(["a[b"]).unwrap_err();
        assert!(err.to_string().contains("a[b"), "{err}");
    }
}
