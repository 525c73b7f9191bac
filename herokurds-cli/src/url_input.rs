//! What `herokurds-url` (and any binary that takes a `DATABASE_URL`) reads
//! besides flags: the URL from its argument or `$DATABASE_URL`, the
//! password from an environment variable or stdin, and a URL built from
//! AWS sources. Nothing here prints.

use std::io::{self, Read};

use anyhow::{bail, Context};
use secrecy::SecretString;

/// The URL to parse or check: the argument, else `$DATABASE_URL`.
pub fn url_text(arg: Option<String>) -> anyhow::Result<String> {
    match arg {
        Some(url) => Ok(url),
        None => std::env::var("DATABASE_URL")
            .context("no URL given: pass it as an argument or set DATABASE_URL"),
    }
}

/// The password from `--password-env VAR` or `--password-stdin`, and a note
/// to add to the problems when there is none.
pub fn read_password(
    env_var: Option<&str>,
    from_stdin: bool,
) -> anyhow::Result<(Option<SecretString>, Option<String>)> {
    if from_stdin {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_string();
        let note = text.is_empty().then(|| "(stdin was empty)".to_string());
        return Ok((Some(text.into()), note));
    }
    let Some(var) = env_var else {
        return Ok((
            None,
            Some("(give the password with --password-env VAR or --password-stdin)".into()),
        ));
    };
    match std::env::var(var) {
        Ok(value) => {
            let note = value
                .is_empty()
                .then(|| format!("(environment variable {var} is empty)"));
            Ok((Some(value.into()), note))
        }
        Err(std::env::VarError::NotPresent) => Ok((
            None,
            Some(format!("(environment variable {var} is not set)")),
        )),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("environment variable {var} is not valid UTF-8")
        }
    }
}

/// Builds a URL from AWS sources (Secrets Manager, a Pulumi export, the RDS
/// API) with [`herokurds_core::runbook::resolve_target`]; `password`, when
/// given (from --password-env or stdin), wins over a secret's.
pub async fn resolve_from_aws(
    target: &herokurds_core::runbook::plan::TargetSection,
    password: Option<secrecy::SecretString>,
) -> Result<herokurds_core::url::DatabaseUrl, String> {
    const GIVEN: &str = "HEROKURDS_URL_GIVEN_PASSWORD";
    let mut target = target.clone();
    let given = password.map(|p| secrecy::ExposeSecret::expose_secret(&p).to_string());
    if given.is_some() {
        target.password_env = Some(GIVEN.into());
    }
    let env = move |name: &str| if name == GIVEN { given.clone() } else { None };
    let options = herokurds_core::aws::ClientOptions::new();
    herokurds_core::runbook::resolve_target(&target, &env, &options)
        .await
        .map(|r| r.url)
        .map_err(|e| e.to_string())
}
