//! `pulumi stack export` JSON shaped like the real thing (version 3, the
//! stack and provider resources around RDS instances, secret outputs with
//! and without `--show-secrets`), for the tests that read an RDS endpoint
//! out of one.

use serde_json::{json, Value};

/// The marker key Pulumi puts on a secret output.
const SIG: &str = "4dabf18193072939515e22adb298388d";
/// The marker's value.
const SIG_VALUE: &str = "1b47061264138c4ac30d75fd1eb44270";

/// A secret output as `pulumi stack export` writes it without
/// `--show-secrets`: ciphertext only.
pub fn encrypted() -> Value {
    json!({SIG: SIG_VALUE, "ciphertext": "v1:Zm9vYmFyYmF6:c2VjcmV0LWNpcGhlcnRleHQtaHVudGVyMg=="})
}

/// A secret output as `pulumi stack export --show-secrets` writes it.
pub fn plaintext(value: Value) -> Value {
    json!({SIG: SIG_VALUE, "plaintext": value.to_string()})
}

/// An `aws:rds/instance:Instance` resource named `name`: PostgreSQL
/// database `micromasters` of user `oldevops` at
/// `<identifier>.c9akciq32.us-east-1.rds.amazonaws.com`, port 5432.
pub fn rds(name: &str, identifier: &str, password: Value) -> Value {
    let address = format!("{identifier}.c9akciq32.us-east-1.rds.amazonaws.com");
    json!({
        "urn": format!("urn:pulumi:production::ol-infrastructure::aws:rds/instance:Instance::{name}"),
        "custom": true,
        "id": identifier,
        "type": "aws:rds/instance:Instance",
        "inputs": {"identifier": identifier, "engine": "postgres", "password": password.clone()},
        "outputs": {
            "address": address,
            "endpoint": format!("{address}:5432"),
            "port": 5432,
            "dbName": "micromasters",
            "username": "oldevops",
            "password": password,
            "identifier": identifier,
            "masterUserSecrets": [],
            "engine": "postgres",
            "engineVersion": "15.4"
        },
        "parent": "urn:pulumi:production::ol-infrastructure::pulumi:pulumi:Stack::ol-infrastructure-production",
        "provider": "urn:pulumi:production::ol-infrastructure::pulumi:providers:aws::default_6_5_0::04da6b54"
    })
}

/// A version 3 stack export: the stack, its AWS provider and a bucket,
/// then `resources`.
pub fn export(resources: Vec<Value>) -> String {
    let mut all = vec![
        json!({"urn": "urn:pulumi:production::ol-infrastructure::pulumi:pulumi:Stack::ol-infrastructure-production",
               "custom": false, "type": "pulumi:pulumi:Stack"}),
        json!({"urn": "urn:pulumi:production::ol-infrastructure::pulumi:providers:aws::default_6_5_0",
               "custom": true, "id": "04da6b54", "type": "pulumi:providers:aws"}),
        json!({"urn": "urn:pulumi:production::ol-infrastructure::aws:s3/bucketV2:BucketV2::app-bucket",
               "custom": true, "id": "ol-micromasters-app-production", "type": "aws:s3/bucketV2:BucketV2",
               "outputs": {"bucket": "ol-micromasters-app-production"}}),
    ];
    all.extend(resources);
    json!({
        "version": 3,
        "deployment": {
            "manifest": {"time": "2024-05-01T12:00:00Z", "magic": "abc", "version": "v3.113.0"},
            "secrets_providers": {"type": "service", "state": {"url": "https://api.pulumi.com", "owner": "mitodl", "project": "ol-infrastructure", "stack": "production"}},
            "resources": all
        }
    })
    .to_string()
}
