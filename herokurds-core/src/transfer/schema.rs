//! The schema, taken once with `pg_dump` and replayed in two halves.
//!
//! `pg_dump --format=custom --section=pre-data --section=post-data` (not
//! `--schema-only`, which would leave out the `REFRESH MATERIALIZED VIEW`
//! entries and large-object entries) writes one archive into the work
//! directory, under the transfer's exported snapshot. Then:
//! - pre-data (types, tables, functions, sequences, large-object shells) is
//!   restored with `pg_restore -L` — minus the extensions the user
//!   excluded — in one transaction, so it is all there or not at all;
//! - post-data (indexes, constraints, triggers, rules, policies,
//!   materialized-view refreshes) is turned into SQL with
//!   `pg_restore --verbose --file=-`, split into its TOC entries (each
//!   headed by `-- TOC entry N (class C OID O)` and `-- Dependencies: ...`)
//!   and run by the transfer's own workers: a table's indexes as soon as
//!   its rows are in, the rest once all data is in, each entry journaled.
//!
//! Plain-format output of pg_dump/pg_restore 15.14+ carries `\restrict`
//! lines that only psql understands; they are dropped here. Passwords
//! reach the tools through `PGPASSWORD` in their environment, never argv;
//! no other `PG*` variable of ours is inherited, and every TLS setting is
//! in the connection string.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncReadExt;

use super::tools::Tools;

/// How a child tool reaches a database: a libpq connection string without
/// the password, and the password for `PGPASSWORD`.
pub(crate) struct ToolConn {
    pub(crate) conninfo: String,
    pub(crate) password: SecretString,
}

/// Why a tool failed: what ran and the end of its stderr.
#[derive(Debug)]
pub(crate) struct ToolFailure {
    pub(crate) what: String,
    pub(crate) stderr_tail: String,
}

impl ToolFailure {
    fn new(what: &str, stderr: &str) -> Self {
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        ToolFailure {
            what: what.to_string(),
            stderr_tail: lines[lines.len().saturating_sub(15)..].join("\n"),
        }
    }
}

/// A `pg_dump`/`pg_restore` command that reaches the database only as the
/// conninfo says: every inherited `PG*` variable (`PGSSLMODE=disable`,
/// `PGHOST`, `PGSERVICE`, `PGPASSFILE`, `PGOPTIONS`, ...) is removed, so
/// nothing in the caller's environment can weaken TLS or redirect the tool.
fn command(program: &Path, conn: Option<&ToolConn>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.as_encoded_bytes().starts_with(b"PG") {
            cmd.env_remove(name);
        }
    }
    cmd.env("PGAPPNAME", "herokurds-transfer")
        .env("PGCONNECT_TIMEOUT", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(c) = conn {
        cmd.env("PGPASSWORD", c.password.expose_secret());
    }
    cmd
}

/// Runs a prepared command to the end; stdout is returned, stderr goes
/// into the failure.
async fn run(mut cmd: tokio::process::Command, what: &str) -> Result<Vec<u8>, ToolFailure> {
    let mut child = cmd
        .spawn()
        .map_err(|e| ToolFailure::new(what, &format!("could not start: {e}")))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (r1, r2) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
    let status = child
        .wait()
        .await
        .map_err(|e| ToolFailure::new(what, &e.to_string()))?;
    let err = String::from_utf8_lossy(&err);
    if !status.success() || r1.is_err() || r2.is_err() {
        return Err(ToolFailure::new(
            what,
            &format!("{err}\n(exit status: {status})"),
        ));
    }
    Ok(out)
}

/// `pg_dump` of the schema (pre- and post-data) into `archive` under
/// `snapshot`.
pub(crate) async fn dump(
    tools: &Tools,
    conn: &ToolConn,
    snapshot: &str,
    archive: &Path,
) -> Result<(), ToolFailure> {
    let mut cmd = command(&tools.pg_dump, Some(conn));
    cmd.args([
        "--format=custom",
        "--section=pre-data",
        "--section=post-data",
        "--no-owner",
        "--no-acl",
        "--no-publications",
        "--no-subscriptions",
        "--no-security-labels",
        "--no-tablespaces",
    ])
    // herokurds' own change capture (online mode) is not copied; its
    // triggers on the app's tables are left out of post-data below.
    .arg(format!(
        "--exclude-schema={}",
        super::online::capture::CAPTURE_SCHEMA
    ))
    .arg(format!("--snapshot={snapshot}"))
    .arg("--file")
    .arg(archive)
    .arg("--dbname")
    .arg(&conn.conninfo);
    run(cmd, "pg_dump --section=pre-data --section=post-data").await?;
    Ok(())
}

/// One line of `pg_restore --list`: `3210; 2606 16395 CONSTRAINT public x x_pkey owner`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListLine {
    pub(crate) dump_id: i32,
    pub(crate) class_oid: u32,
    pub(crate) rest: String,
}

pub(crate) fn parse_list(text: &str) -> Vec<ListLine> {
    text.lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let (id, rest) = l.split_once("; ")?;
            let mut words = rest.splitn(3, ' ');
            let class_oid = words.next()?.parse().ok()?;
            let _obj_oid = words.next()?;
            Some(ListLine {
                dump_id: id.trim().parse().ok()?,
                class_oid,
                rest: words.next()?.to_string(),
            })
        })
        .collect()
}

/// Whether a list line creates (or comments on) one of `extensions`.
pub(crate) fn is_excluded_extension(line: &ListLine, extensions: &[String]) -> bool {
    extensions.iter().any(|ext| {
        let rest = line.rest.trim_end();
        // EXTENSION - name owner | COMMENT - EXTENSION name owner
        (line.class_oid == 3079
            && rest
                .strip_prefix("EXTENSION - ")
                .is_some_and(|r| r.split(' ').next() == Some(ext.as_str())))
            || rest
                .strip_prefix("COMMENT - EXTENSION ")
                .is_some_and(|r| r.split(' ').next() == Some(ext.as_str()))
    })
}

/// Whether a list line is one of herokurds' capture triggers
/// (`TRIGGER schema table herokurds_capture owner`).
pub(crate) fn is_capture_trigger(line: &ListLine) -> bool {
    use super::online::capture::{ROW_TRIGGER, TRUNCATE_TRIGGER};
    line.rest.strip_prefix("TRIGGER ").is_some_and(|r| {
        let words: Vec<&str> = r.split(' ').collect();
        words.len() >= 3 && (words[2] == ROW_TRIGGER || words[2] == TRUNCATE_TRIGGER)
    })
}

/// Writes the pre-data list (every entry of the archive, excluded
/// extensions commented out) and restores pre-data from it in one
/// transaction. Returns the dump ids left out.
pub(crate) async fn restore_pre_data(
    tools: &Tools,
    conn: &ToolConn,
    archive: &Path,
    list_path: &Path,
    excluded_extensions: &[String],
) -> Result<Vec<i32>, ToolFailure> {
    let mut cmd = command(&tools.pg_restore, None);
    cmd.arg("--list").arg(archive);
    let list = run(cmd, "pg_restore --list").await?;
    let list = String::from_utf8_lossy(&list);
    let mut skipped = Vec::new();
    let mut out = String::new();
    for raw in list.lines() {
        let excluded = parse_list(raw)
            .first()
            .filter(|l| is_excluded_extension(l, excluded_extensions))
            .map(|l| l.dump_id);
        if let Some(id) = excluded {
            skipped.push(id);
            out.push_str("; excluded extension: ");
        }
        out.push_str(raw);
        out.push('\n');
    }
    crate::fsutil::write_atomic(list_path, out.as_bytes(), crate::fsutil::PRIVATE_FILE).map_err(
        |e| {
            ToolFailure::new(
                "writing the pre-data list",
                &format!("{}: {e}", list_path.display()),
            )
        },
    )?;
    let mut cmd = command(&tools.pg_restore, Some(conn));
    cmd.args([
        "--section=pre-data",
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "--single-transaction",
    ])
    .arg("--use-list")
    .arg(list_path)
    .arg("--dbname")
    .arg(&conn.conninfo)
    .arg(archive);
    run(cmd, "pg_restore --section=pre-data").await?;
    Ok(skipped)
}

/// One post-data TOC entry and the SQL that restores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PostDataEntry {
    pub(crate) dump_id: i32,
    /// The system catalog of the object (`2606` pg_constraint, `1259` pg_class, ...).
    pub(crate) class_oid: u32,
    /// The object's oid on the source.
    pub(crate) obj_oid: u32,
    /// Other entries this one needs (dump ids, any section).
    pub(crate) deps: Vec<i32>,
    /// pg_dump's type: `INDEX`, `CONSTRAINT`, `FK CONSTRAINT`, `TRIGGER`, ...
    pub(crate) desc: String,
    /// pg_dump's name of the object, e.g. `orders orders_pkey`.
    pub(crate) name: String,
    /// The schema, or `-`.
    pub(crate) schema: String,
    /// The statements, `\restrict` lines removed.
    pub(crate) sql: String,
}

impl PostDataEntry {
    /// `TYPE schema.name`, for messages.
    pub(crate) fn label(&self) -> String {
        if self.schema == "-" || self.schema.is_empty() {
            format!("{} {}", self.desc, self.name)
        } else {
            format!("{} {}.{}", self.desc, self.schema, self.name)
        }
    }
}

/// The post-data entries of `archive` with their SQL, in archive order.
pub(crate) async fn post_data(
    tools: &Tools,
    archive: &Path,
    list_path: &Path,
    excluded_extensions: &[String],
) -> Result<Vec<PostDataEntry>, ToolFailure> {
    let mut cmd = command(&tools.pg_restore, None);
    cmd.args(["--list", "--section=post-data"]).arg(archive);
    let list = run(cmd, "pg_restore --list --section=post-data").await?;
    let lines: Vec<ListLine> = parse_list(&String::from_utf8_lossy(&list))
        .into_iter()
        .filter(|l| !is_excluded_extension(l, excluded_extensions) && !is_capture_trigger(l))
        .collect();
    if lines.is_empty() {
        return Ok(Vec::new());
    }
    let mut list_text = String::new();
    for l in &lines {
        list_text.push_str(&format!("{}; {} 0 {}\n", l.dump_id, l.class_oid, l.rest));
    }
    crate::fsutil::write_atomic(list_path, list_text.as_bytes(), crate::fsutil::PRIVATE_FILE)
        .map_err(|e| {
            ToolFailure::new(
                "writing the post-data list",
                &format!("{}: {e}", list_path.display()),
            )
        })?;
    let mut cmd = command(&tools.pg_restore, None);
    cmd.args([
        "--verbose",
        "--section=post-data",
        "--no-owner",
        "--no-acl",
        "--file=-",
    ])
    .arg("--use-list")
    .arg(list_path)
    .arg(archive);
    let sql = run(cmd, "pg_restore --section=post-data --file=-").await?;
    let sql = String::from_utf8(sql).map_err(|_| {
        ToolFailure::new(
            "pg_restore --section=post-data --file=-",
            "output is not UTF-8",
        )
    })?;
    let expected: HashSet<i32> = lines.iter().map(|l| l.dump_id).collect();
    split_entries(&sql, &expected).map_err(|m| ToolFailure::new("reading post-data SQL", &m))
}

/// Splits pg_restore's verbose plain output into entries. Every header
/// `-- TOC entry N (class C OID O)` with `N` in `expected` starts one; the
/// entry's SQL runs to the next such header (or the dump's trailer).
pub(crate) fn split_entries(
    text: &str,
    expected: &HashSet<i32>,
) -> Result<Vec<PostDataEntry>, String> {
    struct Header {
        start: usize,
        body: usize,
        entry: PostDataEntry,
    }
    let mut headers: Vec<Header> = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let line_start = pos;
        pos += line.len();
        let Some(rest) = line.trim_end().strip_prefix("-- TOC entry ") else {
            continue;
        };
        let Some((id, cls)) = rest.split_once(" (class ") else {
            continue;
        };
        let Ok(dump_id) = id.parse::<i32>() else {
            continue;
        };
        if !expected.contains(&dump_id) || headers.iter().any(|h| h.entry.dump_id == dump_id) {
            continue;
        }
        let Some((class_oid, obj_oid)) = cls
            .strip_suffix(')')
            .and_then(|c| c.split_once(" OID "))
            .and_then(|(c, o)| Some((c.parse().ok()?, o.parse().ok()?)))
        else {
            continue;
        };
        // The header block runs to the next line that is exactly "--".
        let block_end = text[pos..]
            .find("\n--\n")
            .map(|i| pos + i + 4)
            .ok_or_else(|| format!("unterminated header of TOC entry {dump_id}"))?;
        let mut entry = PostDataEntry {
            dump_id,
            class_oid,
            obj_oid,
            deps: Vec::new(),
            desc: String::new(),
            name: String::new(),
            schema: String::new(),
            sql: String::new(),
        };
        for h in text[pos..block_end].lines() {
            if let Some(d) = h.strip_prefix("-- Dependencies: ") {
                entry.deps = d
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
            } else if let Some(n) = h.strip_prefix("-- Name: ") {
                let (name, rest) = n.rsplit_once("; Type: ").unwrap_or((n, ""));
                let (desc, rest) = rest.split_once("; Schema: ").unwrap_or((rest, ""));
                let (schema, _) = rest.split_once("; Owner:").unwrap_or((rest, ""));
                entry.name = name.to_string();
                entry.desc = desc.to_string();
                entry.schema = schema.to_string();
            }
        }
        // The header's own "--" line precedes "-- TOC entry".
        let start = text[..line_start]
            .strip_suffix("--\n")
            .map(|s| s.len())
            .unwrap_or(line_start);
        headers.push(Header {
            start,
            body: block_end,
            entry,
        });
    }
    let found: HashSet<i32> = headers.iter().map(|h| h.entry.dump_id).collect();
    if let Some(missing) = expected.iter().find(|id| !found.contains(id)) {
        return Err(format!(
            "TOC entry {missing} has no SQL in pg_restore's output"
        ));
    }
    let trailer = [
        "\n-- Completed on ",
        "\n--\n-- PostgreSQL database dump complete",
    ]
    .iter()
    .filter_map(|t| text.rfind(t))
    .min()
    .unwrap_or(text.len());
    let mut entries = Vec::with_capacity(headers.len());
    for i in 0..headers.len() {
        let end = headers
            .get(i + 1)
            .map(|h| h.start)
            .unwrap_or(trailer.max(headers[i].body));
        let mut entry = headers[i].entry.clone();
        entry.sql = clean_sql(&text[headers[i].body..end]);
        entries.push(entry);
    }
    Ok(entries)
}

/// Drops psql-only `\restrict`/`\unrestrict` lines and surrounding blanks.
fn clean_sql(sql: &str) -> String {
    sql.lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERBOSE: &str = r#"--
-- PostgreSQL database dump
--

\restrict cATcuS7c

SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

SET default_tablespace = '';

--
-- TOC entry 3210 (class 2606 OID 16395)
-- Dependencies: 215
-- Name: x x_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
-- Data Pos: 0
--

ALTER TABLE ONLY public.x
    ADD CONSTRAINT x_pkey PRIMARY KEY (a);


--
-- TOC entry 3208 (class 1259 OID 16396)
-- Name: x_b_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX x_b_idx ON public.x USING btree (b);


--
-- TOC entry 3357 (class 0 OID 16397)
-- Dependencies: 216 3362
-- Name: mv; Type: MATERIALIZED VIEW DATA; Schema: public; Owner: postgres
-- Data Pos: 0
--

REFRESH MATERIALIZED VIEW public.mv;


-- Completed on 2026-11-25 15:14:30 UTC

--
-- PostgreSQL database dump complete
--

\unrestrict cATcuS7c

"#;

    #[test]
    fn verbose_output_splits_into_entries_with_dependencies() {
        let expected: HashSet<i32> = [3210, 3208, 3357].into();
        let e = split_entries(VERBOSE, &expected).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].dump_id, 3210);
        assert_eq!((e[0].class_oid, e[0].obj_oid), (2606, 16395));
        assert_eq!(e[0].deps, [215]);
        assert_eq!(e[0].desc, "CONSTRAINT");
        assert_eq!(e[0].name, "x x_pkey");
        assert_eq!(e[0].schema, "public");
        assert_eq!(
            e[0].sql,
            "ALTER TABLE ONLY public.x\n    ADD CONSTRAINT x_pkey PRIMARY KEY (a);"
        );
        assert_eq!(
            e[1].sql,
            "CREATE INDEX x_b_idx ON public.x USING btree (b);"
        );
        assert!(e[1].deps.is_empty());
        assert_eq!(e[2].desc, "MATERIALIZED VIEW DATA");
        assert_eq!(e[2].deps, [216, 3362]);
        assert_eq!(e[2].sql, "REFRESH MATERIALIZED VIEW public.mv;");
        assert_eq!(e[2].label(), "MATERIALIZED VIEW DATA public.mv");
    }

    #[test]
    fn a_missing_entry_is_an_error_not_a_silent_skip() {
        let expected: HashSet<i32> = [3210, 9999].into();
        let err = split_entries(VERBOSE, &expected).unwrap_err();
        assert!(err.contains("9999"), "{err}");
    }

    #[test]
    fn restrict_lines_never_reach_the_sql() {
        let expected: HashSet<i32> = [3357].into();
        let e = split_entries(VERBOSE, &expected).unwrap();
        assert!(!e[0].sql.contains("restrict"), "{}", e[0].sql);
    }

    #[test]
    fn list_lines_parse_and_extension_exclusion_matches_exact_names() {
        let list = "; comment\n3360; 3079 16384 EXTENSION - pg_stat_statements \n\
                    3361; 0 0 COMMENT - EXTENSION pg_stat_statements \n\
                    3362; 3079 16385 EXTENSION - pg_stat_statements_x \n\
                    215; 1259 16389 TABLE public x postgres\n";
        let lines = parse_list(list);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[3].rest, "TABLE public x postgres");
        let ex = vec!["pg_stat_statements".to_string()];
        let hits: Vec<i32> = lines
            .iter()
            .filter(|l| is_excluded_extension(l, &ex))
            .map(|l| l.dump_id)
            .collect();
        assert_eq!(hits, [3360, 3361]);
    }
}
