//! Preflight refusals, named before anything is written to the target, and
//! row-level security with both outcomes.

mod transfer_support;

use std::os::unix::fs::PermissionsExt;

use herokurds::transfer::{self, PreflightProblem, TransferError, TransferOptions};
use herokurds_testkit::{LocalPostgres, PostgresOptions};
use transfer_support::{assert_same, column, copy, load, pair, url};

async fn table_count(pg: &LocalPostgres) -> i64 {
    pg.superuser_client(pg.database())
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn problems(err: &TransferError) -> &[PreflightProblem] {
    let p = err.preflight_problems();
    assert!(!p.is_empty(), "expected a preflight refusal, got: {err}");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_row_security_is_refused_by_name_and_bypassrls_copies_every_row() {
    let (src, tgt) = pair().await;
    load(
        &src,
        "CREATE TABLE secrets (id int PRIMARY KEY, who text);
             INSERT INTO secrets VALUES (1, 'heroku_owner'), (2, 'someone'), (3, 'else');
             ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
             ALTER TABLE secrets FORCE ROW LEVEL SECURITY;
             CREATE POLICY mine ON secrets USING (who = current_user);
             CREATE TABLE open_one (id int);",
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().work_dir(work.path());
    let err = copy(&src, &tgt, &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(problems(&err)[0], PreflightProblem::RowSecurity { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("public.secrets") && msg.contains("NO FORCE ROW LEVEL SECURITY"),
        "{msg}"
    );
    assert!(!err.is_resumable());
    assert_eq!(
        table_count(&tgt).await,
        0,
        "nothing written before refusing"
    );

    // With BYPASSRLS the owner reads every row; the target keeps FORCE and
    // the policy.
    src.superuser_execute("postgres", "ALTER ROLE heroku_owner BYPASSRLS")
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().work_dir(work.path());
    let report = copy(&src, &tgt, &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let secrets = report
        .tables
        .iter()
        .find(|t| t.table == "public.secrets")
        .unwrap();
    assert_eq!(secrets.rows, 3);
    assert_same(&src, &tgt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_tables_is_refused() {
    let (src, tgt) = pair().await;
    load(&tgt, "CREATE TABLE already_here (id int)").await;
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().work_dir(work.path());
    let report = transfer::preflight(&url(&src), &url(&tgt), &opts)
        .await
        .unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.target_tables, 1);
    let err = copy(&src, &tgt, &opts).await.unwrap_err();
    match &problems(&err)[0] {
        PreflightProblem::TargetNotEmpty { count, examples } => {
            assert_eq!(*count, 1);
            assert_eq!(examples, "public.already_here");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heroku_ext_pg_stat_statements_is_named_up_front_and_can_be_excluded() {
    let (src, tgt) = tokio::join!(
        LocalPostgres::start(PostgresOptions::heroku().heroku_ext(true)),
        LocalPostgres::start(PostgresOptions::rds())
    );
    let (src, tgt) = (src.unwrap(), tgt.unwrap());
    load(
        &src,
        "CREATE EXTENSION pg_trgm WITH SCHEMA heroku_ext;
             CREATE TABLE docs (id int PRIMARY KEY, body text);
             INSERT INTO docs SELECT i, 'doc ' || i FROM generate_series(1, 100) i;
             CREATE INDEX docs_trgm ON docs USING gin (body heroku_ext.gin_trgm_ops);",
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new().work_dir(work.path());
    let report = transfer::preflight(&url(&src), &url(&tgt), &opts)
        .await
        .unwrap();
    let pss = report
        .extensions
        .iter()
        .find(|e| e.name == "pg_stat_statements")
        .unwrap();
    assert_eq!(pss.schema, "heroku_ext");
    assert!(pss.available_on_target && !pss.creatable);
    let trgm = report
        .extensions
        .iter()
        .find(|e| e.name == "pg_trgm")
        .unwrap();
    assert!(
        trgm.creatable,
        "trusted: the RDS-shaped owner may create it"
    );

    let err = copy(&src, &tgt, &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&problems(&err)[0], PreflightProblem::ExtensionNotCreatable { name, .. } if name == "pg_stat_statements"),
        "{msg}"
    );
    assert!(
        msg.contains("exclude extension pg_stat_statements") && !msg.contains("--"),
        "{msg}"
    );
    assert_eq!(table_count(&tgt).await, 0);

    let opts = opts.exclude_extension("pg_stat_statements");
    let report = copy(&src, &tgt, &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.excluded_extensions, ["pg_stat_statements"]);
    let t = tgt.superuser_client(tgt.database()).await.unwrap();
    let exts: Vec<String> = column(
        &t,
        "SELECT extname || '@' || extnamespace::regnamespace::text FROM pg_extension \
         WHERE extname <> 'plpgsql' ORDER BY 1",
    )
    .await;
    assert_eq!(exts, ["pg_trgm@heroku_ext"]);
    let idx: i64 = t
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'docs_trgm'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(idx, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_dump_older_than_the_source_is_named_with_both_versions() {
    let (src, tgt) = pair().await;
    let bin = tempfile::tempdir().unwrap();
    for tool in ["pg_dump", "pg_restore"] {
        let p = bin.path().join(tool);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho '{tool} (PostgreSQL) 9.6.24'\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new()
        .work_dir(work.path())
        .pg_bin_dir(bin.path());
    let err = copy(&src, &tgt, &opts).await.unwrap_err();
    let msg = err.to_string();
    match &problems(&err)[0] {
        PreflightProblem::ToolsTooOld {
            found,
            needed,
            package,
        } => {
            assert!(found.starts_with("9.6.24"), "{found}");
            assert_eq!(*needed, src.major_version());
            assert_eq!(
                package,
                &format!("postgresql-client-{}", src.major_version())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        msg.contains("pg_dump 9.6.24")
            && msg.contains(&format!("PostgreSQL {}", src.major_version()))
            && msg.contains("PostgreSQL bin directory")
            && !msg.contains("--"),
        "{msg}"
    );

    // No tools at all in the given directory.
    let empty = tempfile::tempdir().unwrap();
    let opts = TransferOptions::new()
        .work_dir(work.path())
        .pg_bin_dir(empty.path());
    let report = transfer::preflight(&url(&src), &url(&tgt), &opts)
        .await
        .unwrap();
    assert!(matches!(
        report.problems[0],
        PreflightProblem::ToolsMissing { .. }
    ));
}
