//! `herokurds init`: writes a commented plan.toml (filled from the Heroku
//! API with `--app` and a token). The text comes from
//! `herokurds_core::runbook::template`; this only writes it.

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
    // Atomic and 0600 like every file herokurds writes (a plan names
    // infrastructure); a symlink at `output` is replaced, not followed.
    herokurds_core::fsutil::write_atomic(
        output,
        text.as_bytes(),
        herokurds_core::fsutil::PRIVATE_FILE,
    )
    .with_context(|| format!("cannot write {}", output.display()))?;
    crate::println_safe(format!(
        "wrote {}: edit it, then `herokurds plan --config {}`",
        output.display(),
        output.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}
