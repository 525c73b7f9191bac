//! The write mark on a real Heroku-shaped cluster: user writes (rows, a
//! truncate, a large object) are seen and named; what is not a user write
//! (ANALYZE, VACUUM, a checkpoint, reads, a temporary table) is not.

use herokurds::runbook::writes::{self, WriteMark};
use herokurds_testkit::{LocalPostgres, PostgresOptions};

async fn mark(pg: &LocalPostgres) -> WriteMark {
    // A fresh session, as the runbook's check opens one.
    writes::mark(&pg.owner_client().await.unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn user_writes_and_large_objects_are_seen_and_maintenance_is_not() {
    let pg = LocalPostgres::start(PostgresOptions::heroku())
        .await
        .unwrap();
    let app = pg.owner_client().await.unwrap();
    app.batch_execute(
        "CREATE TABLE jobs (id int PRIMARY KEY, state text);
         INSERT INTO jobs SELECT g, 'new' FROM generate_series(1, 500) g;
         CREATE TABLE audit (id int);
         SELECT pg_stat_force_next_flush();",
    )
    .await
    .unwrap();
    let before = mark(&pg).await;

    // Not user writes: maintenance, reads, a temp table.
    for sql in [
        "ANALYZE jobs",
        "VACUUM jobs",
        "SELECT count(*) FROM jobs",
        "CREATE TEMP TABLE scratch AS SELECT 1 AS x; INSERT INTO scratch VALUES (2)",
        "SELECT pg_stat_force_next_flush()",
    ] {
        app.batch_execute(sql).await.unwrap();
    }
    pg.superuser_execute(pg.database(), "CHECKPOINT")
        .await
        .unwrap();
    let quiet = writes::compare(&before, &mark(&pg).await);
    assert!(quiet.is_quiet(), "{}", quiet.describe());

    // User writes: rows, a truncate, a large object (which changes no
    // user table), each named.
    app.batch_execute(
        "UPDATE jobs SET state = 'done' WHERE id <= 3;
         TRUNCATE audit;
         SELECT lo_from_bytea(0, 'an uploaded file'::bytea);
         SELECT pg_stat_force_next_flush();",
    )
    .await
    .unwrap();
    let after = mark(&pg).await;
    let activity = writes::compare(&before, &after);
    assert!(activity.transactions > 0);
    assert_eq!(activity.tables.get("public.jobs"), Some(&Some(3)));
    assert_eq!(
        activity.tables.get("public.audit"),
        Some(&None),
        "a truncate replaces the file node"
    );
    assert!(
        activity.tables.contains_key("pg_catalog.pg_largeobject")
            || activity
                .tables
                .contains_key("pg_catalog.pg_largeobject_metadata"),
        "a large object written: {}",
        activity.describe()
    );
    assert!(
        !activity.describe().contains("scratch"),
        "{}",
        activity.describe()
    );
}
