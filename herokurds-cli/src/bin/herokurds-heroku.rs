//! `herokurds-heroku`: the runbook's Heroku CLI steps through the Platform API.
//!
//! Glue only: parse flags, build a `heroku::Client` from the environment,
//! call one client method, render the answer (text or `--json`).

use std::process::ExitCode;

use anyhow::bail;
use clap::{Parser, Subcommand, ValueEnum};
use herokurds_cli::heroku_input::{owned_hint, parse_pairs, taken_hint};
use herokurds_cli::heroku_render as render;
use herokurds_core::heroku::Client;

/// Heroku config vars, maintenance mode and Postgres attachments, through
/// the Heroku Platform API (no Heroku CLI needed).
#[derive(Parser)]
#[command(
    name = "herokurds-heroku",
    version,
    after_help = "\
The token comes from HEROKU_API_KEY, else from ~/.netrc (`machine api.heroku.com`, as
`heroku login` writes it; NETRC names another file). The API is https://api.heroku.com,
or HEROKU_API_URL (a full URL), or HEROKU_HOST (like Heroku's CLI).

Example: the cutover, by hand:
  herokurds-heroku -a myapp maintenance on
  herokurds-heroku -a myapp addons                       # note the add-on and its names
  herokurds-heroku -a myapp attach postgresql-rigid-71273 --as HEROKU_POSTGRES_DB
  herokurds-heroku -a myapp detach DATABASE               # DATABASE_URL is now a plain var
  printf %s \"$NEW_URL\" | herokurds-heroku -a myapp config set DATABASE_URL=-
  herokurds-heroku -a myapp config get DATABASE_URL
  herokurds-heroku -a myapp maintenance off
Rollback: herokurds-heroku -a myapp promote postgresql-rigid-71273

Attaching under a name already taken (by an attachment, or a plain NAME_URL var) needs
--confirm, which replaces it. A var an attachment provides cannot be set: detach first.

Exit status: 0 done; 2 an error (it says what failed and what to do)."
)]
struct Cli {
    /// The app (default: $HEROKU_APP).
    #[arg(short, long, env = "HEROKU_APP", hide_env_values = true, global = true)]
    app: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read or change config vars (values are printed only by `config get`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Maintenance mode: web requests get a maintenance page (workers keep running).
    Maintenance {
        /// on, off or status.
        #[arg(value_enum)]
        action: Maintenance,
    },
    /// The app's Heroku Postgres add-ons and every name they are attached under.
    Addons,
    /// Attach an add-on to the app under a name; NAME_URL becomes its URL.
    Attach {
        /// Add-on name (e.g. postgresql-rigid-71273) or id.
        addon: String,
        /// Attachment name, e.g. HEROKU_POSTGRES_DB (default: Heroku picks one).
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
        /// Replace an attachment or config var that already holds the name.
        #[arg(long)]
        confirm: bool,
    },
    /// Detach an attachment (e.g. DATABASE) from the app; NAME_URL goes away.
    Detach {
        /// Attachment name.
        attachment: String,
    },
    /// Make an add-on the app's DATABASE, like `heroku pg:promote` (the rollback).
    Promote {
        /// Add-on name or id, or one of its attachment names on the app.
        addon: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print one config var's value.
    Get {
        /// Name, e.g. DATABASE_URL.
        key: String,
    },
    /// Set config vars: KEY=VALUE, or KEY=- to read the value from stdin (keeps
    /// secrets out of the process list). Values are never printed.
    Set {
        /// KEY=VALUE or KEY=-.
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
    },
    /// Remove config vars.
    Unset {
        /// Names.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Maintenance {
    On,
    Off,
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    herokurds_cli::disable_core_dumps();
    herokurds_cli::init_tracing();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::from(herokurds_cli::EXIT_OK),
        Err(e) => herokurds_cli::report_error(&e),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(app) = cli.app.as_deref() else {
        bail!("no app: pass -a APP or set HEROKU_APP");
    };
    let client = Client::from_env()?;
    let json = cli.json;
    match cli.command {
        Command::Config(ConfigCommand::Get { key }) => {
            let value = client.config_var(app, &key).await?;
            let Some(value) = value else {
                bail!("config var {key} is not set on app {app}");
            };
            render::config_value(json, app, &key, &value)
        }
        Command::Config(ConfigCommand::Set { pairs }) => {
            let vars = parse_pairs(&pairs, std::io::stdin())?;
            let keys: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
            client
                .set_config_vars(app, vars)
                .await
                .map_err(|e| owned_hint(e, app))?;
            let release = client.latest_release(app).await?;
            render::config_changed(json, app, "set", &keys, release.as_ref())
        }
        Command::Config(ConfigCommand::Unset { keys }) => {
            client
                .unset_config_vars(app, keys.iter().cloned())
                .await
                .map_err(|e| owned_hint(e, app))?;
            let release = client.latest_release(app).await?;
            render::config_changed(json, app, "unset", &keys, release.as_ref())
        }
        Command::Maintenance { action } => {
            let on = match action {
                Maintenance::On => client.set_maintenance(app, true).await?.maintenance,
                Maintenance::Off => client.set_maintenance(app, false).await?.maintenance,
                Maintenance::Status => client.maintenance(app).await?,
            };
            render::maintenance(json, app, on)
        }
        Command::Addons => render::addons(json, app, &client.postgres_addons(app).await?),
        Command::Attach {
            addon,
            name,
            confirm,
        } => {
            let attachment = client
                .attach(app, &addon, name.as_deref(), confirm)
                .await
                .map_err(|e| taken_hint(e, app))?;
            let release = client.latest_release(app).await?;
            render::attached(json, app, &attachment, release.as_ref())
        }
        Command::Detach { attachment } => {
            let removed = client.detach(app, &attachment).await?;
            let release = client.latest_release(app).await?;
            render::detached(json, app, &removed, release.as_ref())
        }
        Command::Promote { addon } => render::promoted(json, &client.promote(app, &addon).await?),
    }
}
