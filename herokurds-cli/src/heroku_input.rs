//! What `herokurds-heroku` reads besides flags: `KEY=VALUE` pairs (a
//! value from stdin for `KEY=-`), and the hints it adds to Heroku's errors.
//! No error here ever quotes a value.

use std::io::Read;

use anyhow::{bail, Context};
use herokurds_core::heroku::HerokuError;
use secrecy::SecretString;

/// Parses `KEY=VALUE` / `KEY=-` arguments; at most one `KEY=-` reads `stdin`
/// (one trailing newline dropped). Errors name the argument's position,
/// never its text, which may be a secret.
pub fn parse_pairs(
    pairs: &[String],
    stdin: impl Read,
) -> anyhow::Result<Vec<(String, SecretString)>> {
    let mut out = Vec::new();
    let mut stdin = Some(stdin);
    for (i, pair) in pairs.iter().enumerate() {
        let Some((key, value)) = pair.split_once('=') else {
            bail!(
                "argument {} is not KEY=VALUE (use KEY=- to read the value from stdin)",
                i + 1
            );
        };
        if key.is_empty() {
            bail!("argument {} has no KEY before '='", i + 1);
        }
        let value = if value == "-" {
            let Some(mut input) = stdin.take() else {
                bail!("only one KEY=- can read stdin");
            };
            let mut text = String::new();
            input
                .read_to_string(&mut text)
                .with_context(|| format!("cannot read the value of {key} from stdin"))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                bail!("no value for {key} on stdin");
            }
            text.to_owned()
        } else {
            value.to_owned()
        };
        out.push((key.to_owned(), SecretString::from(value)));
    }
    Ok(out)
}

/// Names the attachment that owns a var Heroku refused to change, and the
/// command that frees it.
pub fn owned_hint(e: HerokuError, app: &str) -> anyhow::Error {
    let owner = e
        .api_message()
        .and_then(|m| m.strip_prefix("Cannot overwrite attachment values "))
        .and_then(|vars| vars.trim_end_matches('.').split(", ").next())
        .map(str::to_owned);
    match owner.as_deref().and_then(|v| v.strip_suffix("_URL")) {
        Some(name) => anyhow::Error::new(e).context(format!(
            "{name}_URL belongs to the {name} attachment; run `herokurds-heroku -a {app} detach {name}` first"
        )),
        None => e.into(),
    }
}

/// Says to pass `--confirm` when Heroku asks for a confirmation.
pub fn taken_hint(e: HerokuError, app: &str) -> anyhow::Error {
    if e.is_confirmation_required() {
        return anyhow::Error::new(e).context(format!(
            "the name is taken on app {app}; re-run with --confirm to replace it"
        ));
    }
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pairs_and_one_stdin_value() {
        let got = parse_pairs(&args(&["A=1", "B=x=y", "C=-"]), "secret\n".as_bytes()).unwrap();
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        assert_eq!(got, [("A", "1"), ("B", "x=y"), ("C", "secret")]);
        let e = parse_pairs(&args(&["A=-", "B=-"]), "v".as_bytes()).unwrap_err();
        assert!(e.to_string().contains("only one"), "{e}");
        let e = parse_pairs(&args(&["A=-"]), "".as_bytes()).unwrap_err();
        assert!(e.to_string().contains("no value for A"), "{e}");
    }

    #[test]
    fn errors_never_quote_the_argument() {
        let e = parse_pairs(&args(&["ok=1", "hunter2"]), "".as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("argument 2") && !e.to_string().contains("hunter2"),
            "{e}"
        );
        let e = parse_pairs(&args(&["=hunter2"]), "".as_bytes()).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
