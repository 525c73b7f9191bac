//! `herokurds init`: writes a commented plan.toml (filled from the Heroku
//! API with `--app` and a token). The text comes from
//! `herokurds_core::runbook::template`; this only writes it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use herokurds_core::heroku::Client;
use herokurds_core::runbook::template::{plan_template, AppFacts};

/// Writes the template to `output`; an existing file is replaced only with
/// `force`. With `app` and a Heroku token, fills it from the API; with
/// `app` and no token, fills only the name and says so.
pub async fn run(app: Option<&str>, output: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if output.exists() && !force {
        anyhow::bail!(
            "{} exists: writing the template would replace it and lose what it holds; \
             pass --force to overwrite it, or --output OTHER.toml",
            output.display()
        );
    }
    let facts = match app {
        None => None,
        Some(app) => match Client::from_env() {
            Ok(heroku) => Some(
                AppFacts::fetch(&heroku, app)
                    .await
                    .with_context(|| format!("reading app {app} from the Heroku API"))?,
            ),
            Err(e) => {
                eprintln!("note: no Heroku API access ({e}); only the app name is filled in");
                Some(AppFacts::named(app))
            }
        },
    };
    let text = plan_template(facts.as_ref());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .create_new(!force)
        .open(output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", output.display()))?;
    crate::println_safe(format!(
        "wrote {}: edit it, then `herokurds plan --config {}`",
        output.display(),
        output.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
