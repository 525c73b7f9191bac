//! Rendering database URLs, their problems and connection checks for
//! `herokurds-url` (and any binary that takes a `DATABASE_URL`).
//!
//! Nothing here prints a password: parts show it as `***`, problems never
//! carry it, and the full URL is only produced by the caller asking
//! [`DatabaseUrl::expose_url`] itself.

use std::process::ExitCode;

use herokurds_core::pg::{self, ConnectError, ServerInfo};
use herokurds_core::url::{DatabaseUrl, UrlError, UrlProblem};
use serde_json::{json, Map, Value};

use crate::{print_json, println_safe, EXIT_ERROR};

/// The URL's parts as JSON: `{"scheme","user","password":"***","host","port","dbname","params":{...}}`.
pub fn parts_json(url: &DatabaseUrl) -> Value {
    let params: Map<String, Value> = url
        .params()
        .map(|(p, v)| (p.name().to_string(), Value::from(v)))
        .collect();
    json!({
        "scheme": url.scheme().as_str(),
        "user": url.user(),
        "password": "***",
        "host": url.host().to_connect_string(),
        "port": url.port(),
        "dbname": url.dbname(),
        "params": params,
    })
}

/// The URL's parts as aligned `name: value` lines, the password as `***`.
pub fn parts_lines(url: &DatabaseUrl) -> Vec<String> {
    let mut rows: Vec<(String, String)> = vec![
        ("scheme".into(), url.scheme().to_string()),
        ("user".into(), url.user().into()),
        ("password".into(), "***".into()),
        ("host".into(), url.host().to_connect_string()),
        ("port".into(), url.port().to_string()),
        ("dbname".into(), url.dbname().into()),
    ];
    rows.extend(url.params().map(|(p, v)| (p.name().into(), v.into())));
    aligned(&rows)
}

fn aligned(rows: &[(String, String)]) -> Vec<String> {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    rows.iter()
        .map(|(k, v)| format!("{:width$} {}", format!("{k}:"), escape(v)))
        .collect()
}

/// Control characters shown escaped, so a value cannot break the layout.
fn escape(value: &str) -> String {
    if value.chars().any(char::is_control) {
        format!("{value:?}")
    } else {
        value.to_string()
    }
}

/// Every problem on its own line: the missing parts together first.
pub fn problem_lines(err: &UrlError) -> Vec<String> {
    let missing: Vec<String> = err.missing().map(ToString::to_string).collect();
    let mut lines = Vec::new();
    if !missing.is_empty() {
        lines.push(format!("missing: {}", missing.join(", ")));
    }
    lines.extend(
        err.problems()
            .iter()
            .filter(|p| !matches!(p, UrlProblem::Missing { .. }))
            .map(ToString::to_string),
    );
    lines
}

/// Reports an invalid URL (stderr, and a JSON object on stdout with
/// `--json`) and returns the error exit code.
pub fn report_url_error(err: &UrlError, json: bool, notes: &[String]) -> ExitCode {
    if json {
        let _ = print_json(&json!({"error": err.to_string(), "problems": err.problems()}));
    }
    let mut text = String::from("error: invalid database URL");
    for line in problem_lines(err).iter().chain(notes) {
        text.push_str("\n  ");
        text.push_str(line);
    }
    eprintln!("{text}");
    ExitCode::from(EXIT_ERROR)
}

/// Reports a failed connection check and returns the error exit code.
pub fn report_connect_error(url: &DatabaseUrl, err: &ConnectError, json: bool) -> ExitCode {
    if json {
        let _ = print_json(&json!({
            "url": url.to_string(),
            "error": err.to_string(),
            "retryable": err.is_retryable(),
        }));
    }
    eprintln!("error: {err}");
    ExitCode::from(EXIT_ERROR)
}

/// Prints what a connection check found: `tls` is what the client
/// negotiated ([`herokurds_core::pg::Connected::tls`]); what herokurds makes
/// of it ([`pg::tls_concerns`]) goes to stderr as warnings, and to
/// `"tls_warnings"` in JSON.
pub fn print_server_info(
    url: &DatabaseUrl,
    info: &ServerInfo,
    tls: bool,
    json: bool,
) -> anyhow::Result<()> {
    let concerns: Vec<String> = pg::tls_concerns("database", url, tls)
        .iter()
        .map(ToString::to_string)
        .collect();
    if json {
        let mut value = serde_json::to_value(info)?;
        value["url"] = url.to_string().into();
        value["tls"] = tls.into();
        value["tls_warnings"] = concerns.into();
        return print_json(&value);
    }
    let verified = if !tls {
        ""
    } else if url.verifies_certificate() {
        ", certificate verified"
    } else {
        ", certificate NOT verified"
    };
    let rows = [
        ("url".into(), url.to_string()),
        (
            "server".into(),
            format!("PostgreSQL {} (major {})", info.version, info.major),
        ),
        ("user".into(), info.user.clone()),
        ("database".into(), info.database.clone()),
        (
            "tls".into(),
            format!(
                "{} (sslmode={}{verified})",
                if tls { "yes" } else { "no" },
                url.ssl_mode()
            ),
        ),
    ];
    for line in aligned(&rows) {
        println_safe(line)?;
    }
    for warning in concerns {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// Prints a one-line error (as `{"error": ...}` with `--json`); exit 2.
pub fn report_message(message: &str, json: bool) -> ExitCode {
    if json {
        let _ = print_json(&serde_json::json!({ "error": message }));
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(EXIT_ERROR)
}
