//! `herokurds-url`: build, inspect and test a PostgreSQL `DATABASE_URL`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use herokurds_cli::url_input;
use herokurds_cli::url_render::{self as render, parts_json, parts_lines};
use herokurds_cli::{init_tracing, print_json, println_safe, report_error, EXIT_OK};
use herokurds_core::pg;
use herokurds_core::url::{write_env_snippet, DatabaseUrl, UrlPart};

const ABOUT: &str = "Build, inspect and test a PostgreSQL DATABASE_URL (Heroku Postgres, RDS).";

const LONG_ABOUT: &str = "\
Build, inspect and test a PostgreSQL DATABASE_URL (Heroku Postgres, RDS).

Every missing or malformed part is named at once; the password is
percent-encoded exactly and shown as *** unless you ask for it (--reveal).

The password never goes on the command line: other users can read a
process's arguments (ps, /proc) and shells keep them in history. Give the
NAME of an environment variable holding it (--password-env NAME), or pipe
it on stdin (--password-stdin). Likewise, prefer setting DATABASE_URL to
passing a URL as an argument to parse and check.

Examples:
  # The RDS target: endpoint from Pulumi (host:port is split), password from
  # an environment variable, written to a 0600 snippet for `source`.
  export RDS_PASSWORD=...        # e.g. from AWS Secrets Manager
  herokurds-url build --user rds_master \\
      --host \"$(pulumi stack output endpoint)\" --dbname app \\
      --param sslmode=verify-full --param sslrootcert=global-bundle.pem \\
      --password-env RDS_PASSWORD --env-file rds.env
  . ./rds.env && herokurds-url check

  # What is in the Heroku app's URL?
  DATABASE_URL=\"$(heroku config:get DATABASE_URL -a myapp)\" herokurds-url parse --json

Exit codes: 0 success; 2 error (an invalid URL lists every problem; a
failed check says what to fix).";

#[derive(Parser)]
#[command(name = "herokurds-url", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a URL from its parts and print it (password as *** unless --reveal).
    #[command(
        after_help = "The password comes from --password-env VAR or --password-stdin, \
                            never from an argument: see herokurds-url --help."
    )]
    Build(Box<BuildArgs>),
    /// Print the parts of a URL (the argument, else $DATABASE_URL).
    Parse {
        /// The URL; prefer setting DATABASE_URL (arguments are visible to other users).
        url: Option<String>,
        /// One JSON object: {"scheme","user","password":"***","host","port","dbname","params"}.
        #[arg(long)]
        json: bool,
    },
    /// Connect and print server version, user, database and whether TLS is in use.
    Check {
        /// The URL; prefer setting DATABASE_URL (arguments are visible to other users).
        url: Option<String>,
        /// One JSON object instead of lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct BuildArgs {
    /// Role name (Heroku: the URL's user; RDS: the master username).
    #[arg(long)]
    user: Option<String>,
    /// Host name or address; an RDS `endpoint` (host:port) is split.
    #[arg(long)]
    host: Option<String>,
    /// Database name (RDS: the instance's dbName).
    #[arg(long)]
    dbname: Option<String>,
    /// Port (default 5432, or the one carried by --host).
    #[arg(long)]
    port: Option<String>,
    /// postgres (default, as Heroku writes it) or postgresql.
    #[arg(long)]
    scheme: Option<String>,
    /// A libpq parameter, repeatable: sslmode=verify-full, sslrootcert=FILE, application_name=...
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
    params: Vec<(String, String)>,
    /// Read the password from this environment variable (its name, not its value).
    #[arg(long, value_name = "VAR", conflicts_with = "password_stdin")]
    password_env: Option<String>,
    /// Read the password from stdin (one trailing newline is dropped).
    #[arg(long)]
    password_stdin: bool,
    /// Password (and user, host, port, dbname if missing) from this AWS Secrets
    /// Manager secret: name or ARN; RDS-managed or rotation JSON, or plain text.
    #[arg(long, value_name = "ID", conflicts_with_all = ["password_env", "password_stdin"])]
    password_secret: Option<String>,
    /// Host, port, dbname and user from a `pulumi stack export` JSON file
    /// (the aws:rds/instance:Instance's `address`, never `endpoint`).
    #[arg(long, value_name = "FILE", conflicts_with = "rds_instance")]
    pulumi_export: Option<PathBuf>,
    /// Which RDS instance of the export, by resource name or identifier.
    #[arg(long, value_name = "NAME", requires = "pulumi_export")]
    pulumi_resource: Option<String>,
    /// Host, port, dbname, user and the managed password secret from the RDS
    /// API (DescribeDBInstances); AWS credentials from the standard chain.
    #[arg(long, value_name = "ID")]
    rds_instance: Option<String>,
    /// Print the full URL, password included (for piping into another program).
    #[arg(long)]
    reveal: bool,
    /// Also write `export DATABASE_URL='...'` to this file (mode 0600, atomic).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// The variable the env file exports.
    #[arg(long, value_name = "NAME", default_value = "DATABASE_URL")]
    env_var: String,
    /// One JSON object: {"url", "parts", "env_file"}.
    #[arg(long)]
    json: bool,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    herokurds_cli::disable_core_dumps();
    init_tracing();
    let result = match Cli::parse().command {
        Command::Build(args) => build(*args).await,
        Command::Parse { url, json } => parse(url, json),
        Command::Check { url, json } => check(url, json).await,
    };
    result.unwrap_or_else(|e| report_error(&e))
}

async fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let from_aws = args.password_secret.is_some()
        || args.pulumi_export.is_some()
        || args.rds_instance.is_some();
    let (password, note) = if args.password_secret.is_some() {
        (None, None)
    } else {
        url_input::read_password(args.password_env.as_deref(), args.password_stdin)?
    };
    let mut builder = if from_aws {
        match url_input::resolve_from_aws(&args_target(&args), password.clone()).await {
            Ok(url) => url.to_builder(),
            Err(message) => return Ok(render::report_message(&message, args.json)),
        }
    } else {
        DatabaseUrl::builder()
    };
    if let Some(v) = args.user {
        builder.user(v);
    }
    if let Some(v) = args.host {
        builder.host(v);
    }
    if let Some(v) = args.dbname {
        builder.dbname(v);
    }
    if let Some(v) = args.port {
        builder.port_text(v);
    }
    if let Some(v) = args.scheme {
        builder.scheme_text(v);
    }
    if let Some(password) = password {
        builder.password(password);
    }
    for (key, value) in args.params {
        // An explicit --param wins over a default from resolution (sslmode=require).
        builder.remove_param(&key).param(key, value);
    }
    let url = match builder.build() {
        Ok(url) => url,
        Err(err) => {
            let password_missing = err.missing().any(|p| *p == UrlPart::Password);
            let notes: Vec<String> = note.filter(|_| password_missing).into_iter().collect();
            return Ok(render::report_url_error(&err, args.json, &notes));
        }
    };
    if let Some(path) = &args.env_file {
        write_env_snippet(path, &args.env_var, &url)?;
        eprintln!("wrote {} to {} (mode 0600)", args.env_var, path.display());
    }
    let shown = if args.reveal {
        url.expose_url()
    } else {
        url.to_string()
    };
    if args.json {
        print_json(
            &serde_json::json!({"url": shown, "parts": parts_json(&url), "env_file": args.env_file}),
        )?;
    } else {
        println_safe(shown)?;
    }
    Ok(ExitCode::from(EXIT_OK))
}

fn args_target(a: &BuildArgs) -> herokurds_core::runbook::plan::TargetSection {
    herokurds_core::runbook::plan::TargetSection {
        host: a.host.clone(),
        port: a.port.as_ref().and_then(|p| p.parse().ok()),
        dbname: a.dbname.clone(),
        user: a.user.clone(),
        password_secret: a.password_secret.clone(),
        pulumi_export: a.pulumi_export.clone(),
        pulumi_resource: a.pulumi_resource.clone(),
        rds_instance: a.rds_instance.clone(),
        ..Default::default()
    }
}

fn parse(url: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let url = match url_input::url_text(url)?.parse::<DatabaseUrl>() {
        Ok(url) => url,
        Err(err) => return Ok(render::report_url_error(&err, json, &[])),
    };
    if json {
        print_json(&parts_json(&url))?;
    } else {
        for line in parts_lines(&url) {
            println_safe(line)?;
        }
    }
    Ok(ExitCode::from(EXIT_OK))
}

async fn check(url: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let url = match url_input::url_text(url)?.parse::<DatabaseUrl>() {
        Ok(url) => url,
        Err(err) => return Ok(render::report_url_error(&err, json, &[])),
    };
    let connected = match pg::connect(&url).await {
        Ok(connected) => connected,
        Err(err) => return Ok(render::report_connect_error(&url, &err, json)),
    };
    match pg::server_info(connected.client()).await {
        Ok(info) => render::print_server_info(&url, &info, connected.tls(), json)?,
        Err(err) => return Ok(render::report_connect_error(&url, &err, json)),
    }
    Ok(ExitCode::from(EXIT_OK))
}
