//! The subset of the netrc format Heroku's CLI writes: `machine HOST login
//! EMAIL password TOKEN` entries, plus `default` and `macdef` handled the way
//! ftp(1) documents them. Only the password of one machine is ever returned,
//! and only as a [`SecretString`].

use secrecy::SecretString;

/// Finds the `password` of `machine` in netrc `text` (falling back to a
/// `default` entry). Errors name the line, never a value.
pub(crate) fn password_for(text: &str, machine: &str) -> Result<Option<SecretString>, String> {
    let mut tokens = Tokens::new(text);
    let mut current: Option<bool> = None; // Some(true) inside the wanted machine
    let mut found: Option<SecretString> = None;
    let mut default: Option<SecretString> = None;
    let mut in_default = false;
    while let Some((tok, line)) = tokens.next() {
        match tok {
            "machine" => {
                let Some((name, _)) = tokens.next() else {
                    return Err(format!("line {line}: `machine` without a host name"));
                };
                current = Some(name.eq_ignore_ascii_case(machine));
                in_default = false;
            }
            "default" => {
                current = None;
                in_default = true;
            }
            "login" | "account" => {
                if tokens.next().is_none() {
                    return Err(format!("line {line}: `{tok}` without a value"));
                }
            }
            "password" => {
                let Some((value, _)) = tokens.next() else {
                    return Err(format!("line {line}: `password` without a value"));
                };
                if current == Some(true) && found.is_none() {
                    found = Some(SecretString::from(value.to_owned()));
                } else if in_default && default.is_none() {
                    default = Some(SecretString::from(value.to_owned()));
                }
            }
            "macdef" => {
                tokens.skip_macro();
                current = None;
                in_default = false;
            }
            _ => {
                // Unknown keywords (e.g. `port`) take one value; tolerate them.
                tokens.next();
            }
        }
    }
    Ok(found.or(default))
}

struct Tokens<'a> {
    lines: Vec<&'a str>,
    line: usize,
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let rest = lines.first().copied().unwrap_or("");
        Tokens {
            lines,
            line: 0,
            rest,
        }
    }

    fn next(&mut self) -> Option<(&'a str, usize)> {
        loop {
            let trimmed = self.rest.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                self.line += 1;
                if self.line >= self.lines.len() {
                    return None;
                }
                self.rest = self.lines[self.line];
                continue;
            }
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            let (tok, rest) = trimmed.split_at(end);
            self.rest = rest;
            return Some((tok, self.line + 1));
        }
    }

    /// A macro definition runs to the next empty line.
    fn skip_macro(&mut self) {
        loop {
            self.line += 1;
            if self.line >= self.lines.len() {
                self.rest = "";
                return;
            }
            if self.lines[self.line].trim().is_empty() {
                self.rest = "";
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn pw(text: &str, machine: &str) -> Option<String> {
        password_for(text, machine)
            .unwrap()
            .map(|s| s.expose_secret().to_owned())
    }

    #[test]
    fn heroku_cli_layout() {
        let text = "machine api.heroku.com\n  login me@example.com\n  password tok-api\nmachine git.heroku.com\n  login me@example.com\n  password tok-git\n";
        assert_eq!(pw(text, "api.heroku.com").as_deref(), Some("tok-api"));
        assert_eq!(pw(text, "git.heroku.com").as_deref(), Some("tok-git"));
        assert_eq!(pw(text, "other"), None);
    }

    #[test]
    fn one_line_entries_default_and_macdef() {
        let text = "machine a login x password 1\nmacdef init\nmachine api.heroku.com password evil\n\ndefault login y password dflt\n";
        assert_eq!(pw(text, "a").as_deref(), Some("1"));
        assert_eq!(pw(text, "api.heroku.com").as_deref(), Some("dflt"));
    }

    #[test]
    fn malformed_names_the_line_not_the_value() {
        let err = password_for("machine api.heroku.com login me\npassword", "x").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn host_with_port_for_local_emulators() {
        let text = "machine 127.0.0.1:5000 login me password local";
        assert_eq!(pw(text, "127.0.0.1:5000").as_deref(), Some("local"));
    }
}
