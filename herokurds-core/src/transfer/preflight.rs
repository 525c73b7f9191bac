//! Everything that can be known before the target is touched.
//!
//! Both sessions encrypted unless their URLs allow plaintext, and every
//! side whose server is not verified named (`crate::pg::tls_concerns`,
//! the same rules as `herokurds-verify`); server versions; a `pg_dump`
//! able to dump the source; the target empty (unless resuming); every source extension
//! available on the target and creatable by the target user; no table
//! whose rows row-level security would hide from the source user; the size
//! of what will be copied. Every problem is collected, so one run names
//! them all.
//!
//! Creatable extensions: a superuser may create any; anyone with CREATE on
//! the database may create a *trusted* one (`pg_available_extension_versions.trusted`
//! for the default version, which is what `pg_dump`'s `CREATE EXTENSION`
//! installs). On Amazon RDS, members of `rds_superuser` may also create
//! the extensions listed in the `rds.extensions` setting; that rule is
//! applied only when the setting exists, i.e. on a server that is really
//! RDS — a local imitation with a role named `rds_superuser` gets the
//! plain PostgreSQL rule.

use tokio_postgres::Client;

use super::endpoint::Session;
use super::error::{PreflightProblem, Side, TransferError};
use super::report::{ExtensionCheck, PreflightReport};
use super::tools::{self, Tools, ToolsProblem};
use super::TransferOptions;
use crate::pg::catalog::{self, Inventory, TableFilter};

/// What the preflight hands to the run besides its report.
pub(crate) struct Preflight {
    pub(crate) report: PreflightReport,
    pub(crate) tools: Option<Tools>,
}

fn server_info_err(side: Side) -> impl FnOnce(crate::pg::ConnectError) -> TransferError {
    move |e| TransferError::Query {
        side,
        what: "reading the server version".into(),
        message: e.to_string(),
    }
}

/// Up to five names, then "and N more".
pub(crate) fn some_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.into_iter().collect();
    let mut s = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        s.push_str(&format!(" and {} more", names.len() - 5));
    }
    s
}

/// Runs every check. `allow_nonempty_target` is set when resuming.
pub(crate) async fn check(
    src: &Session,
    tgt: &Session,
    opts: &TransferOptions,
    filter: &TableFilter,
    allow_nonempty_target: bool,
) -> Result<(Preflight, Inventory), TransferError> {
    let source = crate::pg::server_info(&src.client)
        .await
        .map_err(server_info_err(Side::Source))?;
    let target = crate::pg::server_info(&tgt.client)
        .await
        .map_err(server_info_err(Side::Target))?;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for (side, session) in [(Side::Source, src), (Side::Target, tgt)] {
        for concern in &session.tls {
            if concern.refuses() {
                problems.push(PreflightProblem::NotEncrypted { side });
            } else {
                warnings.push(concern.to_string());
            }
        }
    }
    let (src, tgt) = (&src.client, &tgt.client);

    // pg_dump: 9.6 reports major 906; pg_dump 9.6 says 9.
    let needed = if source.major >= 100 {
        source.major / 100
    } else {
        source.major
    };
    let package = format!("postgresql-client-{needed}");
    let tools = match tools::find(opts.get_pg_bin_dir(), needed).await {
        Ok(t) => Some(t),
        Err(ToolsProblem::Missing { searched }) => {
            problems.push(PreflightProblem::ToolsMissing { searched, package });
            None
        }
        Err(ToolsProblem::TooOld { found, needed }) => {
            problems.push(PreflightProblem::ToolsTooOld {
                found: found
                    .iter()
                    .map(|(p, v)| format!("{v} ({})", p.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
                needed,
                package,
            });
            None
        }
    };
    if target.major < source.major {
        warnings.push(format!(
            "the target server ({}) is older than the source ({}): restoring into an older major \
             version is not supported by pg_dump and may fail",
            target.version, source.version
        ));
    }

    let inv = catalog::inventory(src, filter)
        .await
        .map_err(|e| TransferError::Query {
            side: Side::Source,
            what: "reading the catalog".into(),
            message: e.to_string(),
        })?;
    let hidden: Vec<String> = inv.tables_hidden_by_rls().map(|t| t.to_string()).collect();
    if !hidden.is_empty() {
        problems.push(PreflightProblem::RowSecurity {
            tables: some_names(hidden.iter().map(String::as_str)),
            user: source.user.clone(),
        });
    }
    let unreadable: Vec<String> = inv
        .tables_to_copy()
        .filter(|t| !t.readable)
        .map(|t| t.to_string())
        .collect();
    if !unreadable.is_empty() {
        problems.push(PreflightProblem::Unreadable {
            tables: some_names(unreadable.iter().map(String::as_str)),
            user: source.user.clone(),
        });
    }

    let target_tables: Vec<String> = tgt
        .query(
            "SELECT format('%s.%s', n.nspname, c.relname) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname !~ '^pg_(toast_)?temp_'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                               AND d.objid = c.oid AND d.deptype = 'e')
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(TransferError::query(
            Side::Target,
            "listing the target's tables",
        ))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !target_tables.is_empty() && !allow_nonempty_target {
        problems.push(PreflightProblem::TargetNotEmpty {
            count: target_tables.len(),
            examples: some_names(target_tables.iter().map(String::as_str)),
        });
    }

    let extensions = check_extensions(src, tgt, &target.user, opts, &mut problems).await?;
    for ex in opts.get_exclude_extensions() {
        if !extensions.iter().any(|e| &e.name == ex) {
            warnings.push(format!(
                "excluded extension {ex}: the source has no such extension"
            ));
        }
    }

    let report = PreflightReport {
        source_version: source.version.clone(),
        target_version: target.version.clone(),
        source_user: source.user.clone(),
        target_user: target.user.clone(),
        pg_dump: tools
            .as_ref()
            .map(|t| format!("{} ({})", t.pg_dump.display(), t.version)),
        tables: inv.tables_to_copy().count(),
        excluded_tables: inv
            .tables
            .iter()
            .filter(|t| t.excluded)
            .map(|t| t.to_string())
            .collect(),
        estimated_bytes: inv.bytes_to_copy().max(0) as u64,
        sequences: inv.sequences.len(),
        large_objects: inv.large_objects.len(),
        extensions,
        target_tables: target_tables.len(),
        problems,
        warnings,
    };
    Ok((Preflight { report, tools }, inv))
}

async fn check_extensions(
    src: &Client,
    tgt: &Client,
    target_user: &str,
    opts: &TransferOptions,
    problems: &mut Vec<PreflightProblem>,
) -> Result<Vec<ExtensionCheck>, TransferError> {
    // Built-in extensions (plpgsql) are not dumped, like pg_dump does.
    let rows = src
        .query(
            "SELECT e.extname::text, n.nspname::text, e.extversion FROM pg_extension e
             JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.oid >= 16384 ORDER BY 1",
            &[],
        )
        .await
        .map_err(TransferError::query(
            Side::Source,
            "listing the source's extensions",
        ))?;
    let rights = tgt
        .query_one(
            "SELECT r.rolsuper,
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_superuser')
                      AND pg_has_role('rds_superuser', 'MEMBER'),
                    current_setting('rds.extensions', true)
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(TransferError::query(
            Side::Target,
            "reading the target user's rights",
        ))?;
    let superuser: bool = rights.get(0);
    let rds_member: bool = rights.get(1);
    let rds_allowed: Option<String> = rights.get(2);
    let rds_allowed: Option<Vec<String>> = rds_allowed
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());

    let mut checks = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let schema: String = row.get(1);
        let version: String = row.get(2);
        let excluded = opts.get_exclude_extensions().contains(&name);
        let avail = tgt
            .query_opt(
                "SELECT a.installed_version IS NOT NULL,
                        coalesce((SELECT v.trusted FROM pg_available_extension_versions v
                                  WHERE v.name = a.name AND v.version = a.default_version), false)
                 FROM pg_available_extensions a WHERE a.name = $1",
                &[&name],
            )
            .await
            .map_err(TransferError::query(
                Side::Target,
                format!("checking extension {name}"),
            ))?;
        let (available, installed, trusted) = match avail {
            Some(r) => (true, r.get::<_, bool>(0), r.get::<_, bool>(1)),
            None => (false, false, false),
        };
        let rds_ok = rds_member
            && rds_allowed
                .as_ref()
                .is_some_and(|l| l.iter().any(|x| x == &name));
        let creatable = available && (installed || superuser || trusted || rds_ok);
        if !excluded {
            if !available {
                problems.push(PreflightProblem::ExtensionUnavailable {
                    name: name.clone(),
                    schema: schema.clone(),
                });
            } else if !creatable {
                let why = if rds_allowed.is_some() {
                    format!(
                        "it is not trusted, {target_user} is not a superuser, and it is not in \
                         this RDS instance's rds.extensions (or {target_user} is not a member of rds_superuser)"
                    )
                } else {
                    format!(
                        "it is not a trusted extension and {target_user} is not a superuser \
                         (membership in a role named rds_superuser counts only on real RDS, \
                         where the rds.extensions setting exists)"
                    )
                };
                problems.push(PreflightProblem::ExtensionNotCreatable {
                    name: name.clone(),
                    schema: schema.clone(),
                    user: target_user.to_string(),
                    why,
                });
            }
        }
        checks.push(ExtensionCheck {
            name,
            schema,
            version,
            installed_on_target: installed,
            available_on_target: available,
            creatable,
            excluded,
        });
    }
    Ok(checks)
}
