//! The catalog inventory on a real Heroku-shaped cluster: what counts as a
//! table to copy, which columns, and whether row-level security would hide
//! rows from the owner.

use herokurds::pg::catalog::{self, TableFilter, TableKind};
use herokurds_testkit::{LocalPostgres, PostgresOptions};

const SCHEMA: &str = r#"
CREATE EXTENSION hstore;
CREATE TABLE plain (id int PRIMARY KEY, dropped text, v text,
                    g int GENERATED ALWAYS AS (id * 2) STORED);
ALTER TABLE plain DROP COLUMN dropped;
INSERT INTO plain SELECT i, 'v' || i FROM generate_series(1, 100) i;
CREATE TABLE "Mixed Case" ("select" int);
CREATE TABLE parent (a int);
CREATE TABLE child () INHERITS (parent);
CREATE TABLE parted (k int, v text) PARTITION BY RANGE (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
CREATE TABLE parted_d PARTITION OF parted DEFAULT;
CREATE UNLOGGED TABLE scratch (x int);
CREATE TABLE nocols ();
CREATE TABLE secret (id int, owner_name text);
ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
ALTER TABLE secret FORCE ROW LEVEL SECURITY;
CREATE POLICY only_mine ON secret USING (owner_name = current_user);
CREATE TABLE soft (id int);
ALTER TABLE soft ENABLE ROW LEVEL SECURITY;
CREATE SEQUENCE down INCREMENT -1 MINVALUE -100 MAXVALUE 100 START 100;
SELECT nextval('down'), nextval('down');
CREATE SEQUENCE fresh;
CREATE TABLE ident (id bigint GENERATED ALWAYS AS IDENTITY);
CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM plain;
SELECT lo_from_bytea(424242, 'hello');
CREATE TYPE mood AS ENUM ('a', 'b');
CREATE TYPE pair AS (x int, y text);
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN posint2 AS posint;
CREATE TABLE typed (m mood, ms mood[], p pair, d posint2, ia int[], ds posint[], h hstore);
"#;

#[tokio::test]
async fn inventory_lists_what_a_copy_must_reproduce() {
    let pg = LocalPostgres::start(PostgresOptions::heroku())
        .await
        .unwrap();
    let owner = pg.owner_client().await.unwrap();
    // hstore is trusted: the non-superuser owner may create it.
    owner.batch_execute(SCHEMA).await.unwrap();
    owner.batch_execute("ANALYZE").await.unwrap();

    let filter = TableFilter::from_patterns(["scratch"]).unwrap();
    let inv = catalog::inventory(&owner, &filter).await.unwrap();
    assert_eq!(inv.role.name, "heroku_owner");
    assert!(!inv.role.bypasses_rls());

    let names: Vec<String> = inv.tables.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        names,
        [
            "public.Mixed Case",
            "public.child",
            "public.ident",
            "public.nocols",
            "public.parent",
            "public.parted",
            "public.parted_1",
            "public.parted_d",
            "public.plain",
            "public.scratch",
            "public.secret",
            "public.soft",
            "public.typed",
        ],
        "no matview, no extension tables, no system tables"
    );

    let plain = inv.table("public", "plain").unwrap();
    let cols: Vec<&str> = plain.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(cols, ["id", "v"], "dropped and generated columns left out");
    assert_eq!(plain.columns[1].attnum, 3, "attnum keeps the dropped gap");
    assert_eq!(plain.generated_columns, 1);
    assert_eq!(plain.column_list(), "\"id\", \"v\"");
    assert_eq!(plain.estimated_rows, Some(100));
    assert!(plain.heap_blocks >= 1 && plain.table_bytes >= plain.heap_bytes);

    let mixed = inv.table("public", "Mixed Case").unwrap();
    assert_eq!(mixed.qualified_name(), "\"public\".\"Mixed Case\"");
    assert_eq!(mixed.column_list(), "\"select\"");

    assert!(inv.table("public", "parent").unwrap().is_inheritance_parent);
    assert!(!inv.table("public", "child").unwrap().is_inheritance_parent);
    let parted = inv.table("public", "parted").unwrap();
    assert_eq!(parted.kind, TableKind::Partitioned);
    assert!(!parted.holds_rows());
    assert!(inv.table("public", "parted_d").unwrap().is_partition);
    let scratch = inv.table("public", "scratch").unwrap();
    assert!(scratch.unlogged && scratch.excluded);
    assert!(inv.table("public", "nocols").unwrap().columns.is_empty());

    // FORCE RLS hides rows from the owner; plain ENABLE does not.
    let secret = inv.table("public", "secret").unwrap();
    assert!(secret.row_security && secret.force_row_security && secret.rows_hidden_by_rls);
    let soft = inv.table("public", "soft").unwrap();
    assert!(soft.row_security && !soft.rows_hidden_by_rls);
    let hidden: Vec<String> = inv.tables_hidden_by_rls().map(|t| t.to_string()).collect();
    assert_eq!(hidden, ["public.secret"]);

    let copy: Vec<String> = inv.tables_to_copy().map(|t| t.to_string()).collect();
    assert!(!copy.contains(&"public.parted".to_string()));
    assert!(!copy.contains(&"public.scratch".to_string()));
    assert!(copy.contains(&"public.parted_d".to_string()));

    // Binary COPY of arrays of user types and of composites embeds type
    // oids another server would reject.
    let typed = inv.table("public", "typed").unwrap();
    let portable: Vec<(&str, bool)> = typed
        .columns
        .iter()
        .map(|c| (c.name.as_str(), c.binary_portable))
        .collect();
    assert_eq!(
        portable,
        [
            ("m", true),
            ("ms", false),
            ("p", false),
            ("d", true),
            ("ia", true),
            ("ds", false),
            ("h", true)
        ]
    );
    assert!(!typed.binary_portable() && plain.binary_portable());

    let seq = |n: &str| inv.sequences.iter().find(|s| s.name == n).unwrap();
    let down = seq("down");
    assert_eq!(
        (down.last_value, down.is_called, down.increment),
        (99, true, -1)
    );
    let fresh = seq("fresh");
    assert_eq!((fresh.last_value, fresh.is_called), (1, false));
    let ident = seq("ident_id_seq");
    assert!(ident.identity);
    assert_eq!(ident.owned_by.as_deref(), Some("ident.id"));

    assert_eq!(inv.large_objects.len(), 1);
    assert_eq!(inv.large_objects[0].oid, 424242);
    assert_eq!(inv.large_objects[0].owner, "heroku_owner");

    // The superuser bypasses RLS: nothing is hidden from it.
    let su = pg.superuser_client(pg.database()).await.unwrap();
    let inv = catalog::inventory(&su, &TableFilter::new()).await.unwrap();
    assert!(inv.role.bypasses_rls());
    assert_eq!(inv.tables_hidden_by_rls().count(), 0);
}
