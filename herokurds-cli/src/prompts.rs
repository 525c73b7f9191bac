//! The questions the binaries ask on the terminal: typed confirmations.
//! Before a change that cannot be undone, the operator types a name (the
//! app, the database), as Heroku's CLI asks.

use std::io::{BufRead, Write};

/// Prints `warning` and asks for `expected` on stderr, reads one line from
/// `input`; true when the line is exactly `expected`.
pub fn typed(warning: &str, expected: &str, input: impl BufRead) -> anyhow::Result<bool> {
    let mut input = input;
    eprint!(" !    {warning}\n !    To proceed, type {expected} or re-run with --yes\n\n> ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    input.read_line(&mut answer)?;
    Ok(answer.trim() == expected)
}

/// Asks the operator to type the target database's name before
/// `--restart-target` drops what the target user owns there.
pub fn restart_target(dbname: &str) -> anyhow::Result<()> {
    let warning = format!(
        "--restart-target drops EVERYTHING the target user owns in database {dbname} \
         (DROP OWNED BY CURRENT_USER CASCADE), rows written there since the last copy included."
    );
    if typed(&warning, dbname, std::io::stdin().lock())? {
        Ok(())
    } else {
        anyhow::bail!("not confirmed: the target database {dbname} was left as it is")
    }
}

/// Asks the operator to type the app's name, as Heroku's CLI does.
pub fn app_change(app: &str) -> anyhow::Result<()> {
    confirm_app(
        &format!("This changes app {app} (maintenance mode, DATABASE attachment, config vars)."),
        app,
    )
}

/// Asks the operator to type the app's name before `finish` removes the
/// change capture from the target, after which a rollback can no longer
/// copy the target's writes back.
pub fn finish(app: &str) -> anyhow::Result<()> {
    confirm_app(
        &format!(
            "This removes change capture from RDS for app {app}: after it, `herokurds rollback` can no \
             longer copy the writes made on RDS back to the old database."
        ),
        app,
    )
}

/// Shows `warning` and asks for the app's name; refused when it differs.
fn confirm_app(warning: &str, app: &str) -> anyhow::Result<()> {
    if typed(warning, app, std::io::stdin().lock())? {
        Ok(())
    } else {
        Err(herokurds_core::runbook::RunbookError::NotConfirmed.into())
    }
}
