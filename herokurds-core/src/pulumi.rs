//! The RDS endpoint from a `pulumi stack export`.
//!
//! The runbook greps `pulumi stack export` for `endpoint` and appends
//! `:5432`, but Pulumi's `aws:rds/instance:Instance` output `endpoint` is
//! already `host:port` (so the URL got `host:5432:5432`); the host is
//! `address`. This module reads the export JSON (`{"version":3,
//! "deployment":{"resources":[...]}}`), finds the RDS instances, picks one
//! by name or identifier, and returns its `address`, `port`, `dbName` (or
//! the older `name`) and `username` as an [`RdsEndpoint`].
//!
//! Pulumi marks secret outputs with a signature key. Without
//! `--show-secrets` they hold only `ciphertext`, which is never taken for a
//! value: asking for such a field is an error that says what to do. With
//! `--show-secrets` they hold `plaintext` (the value, JSON-encoded), which
//! is decoded. Errors never quote the export's content, which may then
//! contain secrets.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::aws::RdsEndpoint;

/// The resource type of an RDS DB instance in Pulumi's AWS provider.
pub const RDS_INSTANCE_TYPE: &str = "aws:rds/instance:Instance";

/// The key Pulumi uses to mark a secret value, and its value.
const SECRET_SIG_KEY: &str = "4dabf18193072939515e22adb298388d";
const SECRET_SIG_VALUE: &str = "1b47061264138c4ac30d75fd1eb44270";

/// Failures reading a stack export or finding the instance in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PulumiError {
    /// The export could not be read.
    #[error("could not read the Pulumi stack export {path}: {source}")]
    Io {
        /// The file (`-` for stdin).
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The export is not JSON (content not quoted: it may hold secrets).
    #[error("the Pulumi stack export {path} is not valid JSON (line {line}, column {column}); produce it with `pulumi stack export --file FILE`")]
    Json {
        /// The file (`-` for stdin).
        path: String,
        /// Where the parser stopped.
        line: usize,
        /// Where the parser stopped.
        column: usize,
    },
    /// The JSON is not a stack export.
    #[error("{path} is not a Pulumi stack export: {reason}")]
    NotAnExport {
        /// The file (`-` for stdin).
        path: String,
        /// What is missing.
        reason: String,
    },
    /// No RDS instance in the stack.
    #[error("the stack export has no {RDS_INSTANCE_TYPE} resource (it has {resources} resources); is this the stack that creates the database?")]
    NoRdsInstance {
        /// How many resources the export has.
        resources: usize,
    },
    /// Several RDS instances and no choice made.
    #[error("the stack export has {} RDS instances; choose one by name or identifier: {}", candidates.len(), candidates.join(", "))]
    Ambiguous {
        /// `name (identifier ...)` of each instance.
        candidates: Vec<String>,
    },
    /// The chosen instance is not in the export.
    #[error("no RDS instance named or identified {wanted:?} in the stack export; it has: {}", candidates.join(", "))]
    NotFound {
        /// What was asked for.
        wanted: String,
        /// `name (identifier ...)` of each instance.
        candidates: Vec<String>,
    },
    /// An output the endpoint needs is absent.
    #[error("RDS instance {resource} has no output {field:?} in the stack export; was it deployed (`pulumi up`)?")]
    MissingOutput {
        /// The resource's name.
        resource: String,
        /// The output.
        field: &'static str,
    },
    /// An output is a Pulumi secret exported without `--show-secrets`.
    #[error("output {field:?} of RDS instance {resource} is an encrypted Pulumi secret; export with `pulumi stack export --show-secrets`, or pass the {field} explicitly")]
    EncryptedOutput {
        /// The resource's name.
        resource: String,
        /// The output.
        field: String,
    },
    /// An output has an unexpected shape.
    #[error("output {field:?} of RDS instance {resource} is unusable: {reason}")]
    BadOutput {
        /// The resource's name.
        resource: String,
        /// The output.
        field: String,
        /// What is wrong (without the value).
        reason: String,
    },
}

/// The RDS instances of a parsed stack export.
#[derive(Debug, Clone)]
pub struct StackExport {
    resources: usize,
    instances: Vec<RdsInstance>,
}

/// One `aws:rds/instance:Instance` resource of a stack export.
#[derive(Debug, Clone)]
pub struct RdsInstance {
    urn: String,
    name: String,
    id: Option<String>,
    inputs: Map<String, Value>,
    outputs: Map<String, Value>,
}

impl StackExport {
    /// Parses export JSON; `origin` names it in errors (a path, or `-`).
    pub fn parse(json: &str, origin: &str) -> Result<Self, PulumiError> {
        let value: Value = serde_json::from_str(json).map_err(|e| PulumiError::Json {
            path: origin.to_string(),
            line: e.line(),
            column: e.column(),
        })?;
        let not_export = |reason: &str| PulumiError::NotAnExport {
            path: origin.to_string(),
            reason: reason.to_string(),
        };
        let deployment = value
            .get("deployment")
            .ok_or_else(|| not_export("it has no \"deployment\" object"))?;
        let resources = match deployment.get("resources") {
            Some(Value::Array(r)) => r.as_slice(),
            Some(Value::Null) | None => &[],
            Some(_) => return Err(not_export("\"deployment.resources\" is not an array")),
        };
        let instances = resources
            .iter()
            .filter(|r| r.get("type").and_then(Value::as_str) == Some(RDS_INSTANCE_TYPE))
            .filter(|r| r.get("delete").and_then(Value::as_bool) != Some(true))
            .map(RdsInstance::from_resource)
            .collect();
        Ok(StackExport {
            resources: resources.len(),
            instances,
        })
    }

    /// Reads and parses an export from a file, or from stdin when `path` is `-`.
    pub fn read(path: &Path) -> Result<Self, PulumiError> {
        let origin = path.display().to_string();
        let io = |source| PulumiError::Io {
            path: origin.clone(),
            source,
        };
        let text = if origin == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(io)?;
            text
        } else {
            std::fs::read_to_string(path).map_err(io)?
        };
        Self::parse(&text, &origin)
    }

    /// Every RDS instance in the export (resources pending deletion left out).
    pub fn rds_instances(&self) -> &[RdsInstance] {
        &self.instances
    }

    /// The RDS instance whose URN name, identifier, id or URN is `wanted`;
    /// with `None`, the only one.
    pub fn rds_instance(&self, wanted: Option<&str>) -> Result<&RdsInstance, PulumiError> {
        let candidates = || self.instances.iter().map(RdsInstance::describe).collect();
        match wanted {
            None => match self.instances.as_slice() {
                [] => Err(PulumiError::NoRdsInstance {
                    resources: self.resources,
                }),
                [only] => Ok(only),
                _ => Err(PulumiError::Ambiguous {
                    candidates: candidates(),
                }),
            },
            Some(wanted) => {
                if self.instances.is_empty() {
                    return Err(PulumiError::NoRdsInstance {
                        resources: self.resources,
                    });
                }
                let matches: Vec<&RdsInstance> = self
                    .instances
                    .iter()
                    .filter(|i| i.answers_to(wanted))
                    .collect();
                match matches.as_slice() {
                    [one] => Ok(one),
                    [] => Err(PulumiError::NotFound {
                        wanted: wanted.to_string(),
                        candidates: candidates(),
                    }),
                    several => Err(PulumiError::Ambiguous {
                        candidates: several.iter().map(|i| i.describe()).collect(),
                    }),
                }
            }
        }
    }

    /// The endpoint of [`StackExport::rds_instance`].
    pub fn rds_endpoint(&self, wanted: Option<&str>) -> Result<RdsEndpoint, PulumiError> {
        self.rds_instance(wanted)?.endpoint()
    }
}

impl RdsInstance {
    fn from_resource(resource: &Value) -> RdsInstance {
        let text = |k: &str| resource.get(k).and_then(Value::as_str).map(str::to_string);
        let object = |k: &str| match resource.get(k) {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let urn = text("urn").unwrap_or_default();
        let name = urn.rsplit("::").next().unwrap_or_default().to_string();
        RdsInstance {
            name,
            urn,
            id: text("id").filter(|s| !s.is_empty()),
            inputs: object("inputs"),
            outputs: object("outputs"),
        }
    }

    /// The Pulumi resource name (the last part of the URN).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The resource URN.
    pub fn urn(&self) -> &str {
        &self.urn
    }

    /// The provider id (for an RDS instance, its identifier).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The DB instance identifier (output, else input), when readable.
    pub fn identifier(&self) -> Option<String> {
        [&self.outputs, &self.inputs]
            .into_iter()
            .find_map(|m| match plain(m.get("identifier")?) {
                Plain::Value(Value::String(s)) => Some(s),
                _ => None,
            })
    }

    /// The ARN of the RDS-managed master user secret
    /// (`masterUserSecrets[0].secretArn`), when RDS manages the password.
    pub fn master_secret_arn(&self) -> Option<String> {
        let secrets = match plain(self.outputs.get("masterUserSecrets")?) {
            Plain::Value(v) => v,
            _ => return None,
        };
        secrets
            .as_array()?
            .first()?
            .get("secretArn")?
            .as_str()
            .map(str::to_string)
    }

    fn answers_to(&self, wanted: &str) -> bool {
        self.name == wanted
            || self.urn == wanted
            || self.id.as_deref() == Some(wanted)
            || self.identifier().as_deref() == Some(wanted)
    }

    fn describe(&self) -> String {
        match self.identifier().or_else(|| self.id.clone()) {
            Some(ident) if ident != self.name => format!("{} (identifier {ident})", self.name),
            _ => self.name.clone(),
        }
    }

    /// Host (`address`, or the host part of `endpoint`), port, database
    /// (`dbName`, or the older `name`) and user (`username`).
    pub fn endpoint(&self) -> Result<RdsEndpoint, PulumiError> {
        let address = self.string_output("address")?;
        let endpoint = self.string_output("endpoint")?;
        let split = endpoint.as_deref().and_then(|e| e.rsplit_once(':'));
        let host = match (address, split, &endpoint) {
            (Some(a), _, _) => a,
            (None, Some((host, _)), _) => host.to_string(),
            (None, None, Some(e)) => e.clone(),
            (None, None, None) => return Err(self.missing("address")),
        };
        let port = match self.output("port")? {
            Some(Value::Number(n)) => Some(n.as_u64().and_then(|p| u16::try_from(p).ok())),
            Some(Value::String(s)) => Some(s.trim().parse::<u16>().ok()),
            Some(_) => Some(None),
            None => None,
        };
        let port = match port {
            Some(Some(p)) if p != 0 => p,
            Some(_) => return Err(self.bad("port", "it is not a TCP port number")),
            None => match split.map(|(_, p)| p.parse::<u16>()) {
                Some(Ok(p)) if p != 0 => p,
                Some(_) => return Err(self.bad("endpoint", "its port part is not a number")),
                None => return Err(self.missing("port")),
            },
        };
        let dbname = match self.string_output("dbName")? {
            Some(d) => Some(d),
            None => self.string_output("name")?,
        };
        Ok(RdsEndpoint {
            host,
            port,
            dbname,
            username: self.string_output("username")?,
        })
    }

    /// An output with secrets unwrapped; `None` when absent or null.
    fn output(&self, field: &str) -> Result<Option<Value>, PulumiError> {
        match self.outputs.get(field).map(plain) {
            None | Some(Plain::Value(Value::Null)) => Ok(None),
            Some(Plain::Value(v)) => Ok(Some(v)),
            Some(Plain::Encrypted) => Err(PulumiError::EncryptedOutput {
                resource: self.name.clone(),
                field: field.to_string(),
            }),
            Some(Plain::Malformed(reason)) => Err(self.bad(field, reason)),
        }
    }

    /// A string output; `None` when absent, null or empty.
    fn string_output(&self, field: &str) -> Result<Option<String>, PulumiError> {
        match self.output(field)? {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.bad(field, "it is not a string")),
        }
    }

    fn missing(&self, field: &'static str) -> PulumiError {
        PulumiError::MissingOutput {
            resource: self.name.clone(),
            field,
        }
    }

    fn bad(&self, field: &str, reason: &str) -> PulumiError {
        PulumiError::BadOutput {
            resource: self.name.clone(),
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A value with Pulumi's secret wrapper taken off.
enum Plain {
    Value(Value),
    Encrypted,
    Malformed(&'static str),
}

fn plain(value: &Value) -> Plain {
    let Value::Object(map) = value else {
        return Plain::Value(value.clone());
    };
    if map.get(SECRET_SIG_KEY).and_then(Value::as_str) != Some(SECRET_SIG_VALUE) {
        return Plain::Value(value.clone());
    }
    match map.get("plaintext") {
        // The plaintext is the value, JSON-encoded.
        Some(Value::String(text)) => match serde_json::from_str(text) {
            Ok(v) => Plain::Value(v),
            Err(_) => Plain::Malformed("its secret plaintext is not JSON"),
        },
        Some(_) => Plain::Malformed("its secret plaintext is not a string"),
        None if map.contains_key("ciphertext") => Plain::Encrypted,
        None => Plain::Malformed("it is a secret with neither plaintext nor ciphertext"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_plain(v: &str) -> Value {
        serde_json::json!({SECRET_SIG_KEY: SECRET_SIG_VALUE, "plaintext": v})
    }

    #[test]
    fn plaintext_secrets_are_decoded_and_ciphertext_is_not_a_value() {
        assert!(
            matches!(plain(&secret_plain("\"pg\"")), Plain::Value(Value::String(s)) if s == "pg")
        );
        assert!(matches!(
            plain(&secret_plain("5432")),
            Plain::Value(Value::Number(_))
        ));
        let encrypted =
            serde_json::json!({SECRET_SIG_KEY: SECRET_SIG_VALUE, "ciphertext": "v1:abc"});
        assert!(matches!(plain(&encrypted), Plain::Encrypted));
        // An ordinary object is a value.
        assert!(matches!(
            plain(&serde_json::json!({"ciphertext": "x"})),
            Plain::Value(_)
        ));
    }

    #[test]
    fn invalid_json_errors_do_not_quote_the_content() {
        let err = StackExport::parse("{\"deployment\": {\"password\": \"hunter2", "stack.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("stack.json") && err.contains("line 1"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn non_exports_are_named() {
        let err = StackExport::parse("{\"version\":3}", "x.json").unwrap_err();
        assert!(matches!(err, PulumiError::NotAnExport { .. }), "{err}");
    }
}
