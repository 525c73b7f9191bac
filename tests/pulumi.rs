//! Reading the RDS endpoint out of `pulumi stack export` JSON shaped like
//! the real thing (version 3, stack and provider resources around the RDS
//! instances, secret outputs with and without `--show-secrets`).

use herokurds::aws::RdsEndpoint;
use herokurds::pulumi::{PulumiError, StackExport};
use herokurds_testkit::pulumi::{encrypted, export, plaintext, rds};
use serde_json::json;

fn parse(json: &str) -> StackExport {
    StackExport::parse(json, "stack.json").unwrap()
}

#[test]
fn one_instance_gives_address_not_endpoint_as_host() {
    let stack = parse(&export(vec![rds(
        "micromasters-db",
        "micromasters-production",
        encrypted(),
    )]));
    let endpoint = stack.rds_endpoint(None).unwrap();
    assert_eq!(
        endpoint,
        RdsEndpoint::new(
            "micromasters-production.c9akciq32.us-east-1.rds.amazonaws.com",
            5432
        )
        .with_dbname("micromasters")
        .with_username("oldevops")
    );
    assert!(!endpoint.host.contains(':'));
    // The encrypted password is never looked at for the endpoint.
}

#[test]
fn two_instances_need_a_choice_and_list_the_candidates() {
    let json = export(vec![
        rds("micromasters-db", "micromasters-production", encrypted()),
        rds("mitxonline-db", "mitxonline-production", encrypted()),
    ]);
    let stack = parse(&json);
    let err = stack.rds_endpoint(None).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PulumiError::Ambiguous { .. }), "{text}");
    assert!(
        text.contains("micromasters-db (identifier micromasters-production)"),
        "{text}"
    );
    assert!(
        text.contains("mitxonline-db (identifier mitxonline-production)"),
        "{text}"
    );

    // By Pulumi name, by identifier, by URN.
    for wanted in [
        "mitxonline-db",
        "mitxonline-production",
        "urn:pulumi:production::ol-infrastructure::aws:rds/instance:Instance::mitxonline-db",
    ] {
        let e = stack.rds_endpoint(Some(wanted)).unwrap();
        assert!(
            e.host.starts_with("mitxonline-production."),
            "{wanted}: {e:?}"
        );
    }
    let err = stack.rds_endpoint(Some("nope")).unwrap_err().to_string();
    assert!(
        err.contains("\"nope\"") && err.contains("micromasters-db"),
        "{err}"
    );
}

#[test]
fn no_instance_is_a_clear_error() {
    let err = parse(&export(vec![])).rds_endpoint(None).unwrap_err();
    assert!(
        matches!(err, PulumiError::NoRdsInstance { resources: 3 }),
        "{err}"
    );
    assert!(err.to_string().contains("aws:rds/instance:Instance"));
}

#[test]
fn show_secrets_plaintext_outputs_are_decoded() {
    let mut instance = rds("db", "micromasters-production", plaintext(json!("hunter2")));
    let outputs = instance["outputs"].as_object_mut().unwrap();
    outputs.insert("username".into(), plaintext(json!("oldevops")));
    outputs.insert("port".into(), plaintext(json!(5433)));
    let stack = parse(&export(vec![instance]));
    let endpoint = stack.rds_endpoint(None).unwrap();
    assert_eq!(endpoint.username.as_deref(), Some("oldevops"));
    assert_eq!(endpoint.port, 5433);
}

#[test]
fn ciphertext_outputs_are_never_taken_for_values() {
    let mut instance = rds("db", "micromasters-production", encrypted());
    instance["outputs"]["username"] = encrypted();
    let stack = parse(&export(vec![instance]));
    let err = stack.rds_endpoint(None).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PulumiError::EncryptedOutput { .. }), "{text}");
    assert!(text.contains("\"username\""), "{text}");
    assert!(text.contains("--show-secrets"), "{text}");
    assert!(!text.contains("v1:"), "{text}");
}

#[test]
fn older_exports_with_name_and_only_an_endpoint_still_work() {
    let mut instance = rds("db", "legacy", encrypted());
    let outputs = instance["outputs"].as_object_mut().unwrap();
    outputs.remove("address");
    outputs.remove("port");
    outputs.remove("dbName");
    outputs.insert("name".into(), json!("legacydb"));
    outputs.insert("endpoint".into(), json!("legacy.x.rds.amazonaws.com:6543"));
    let endpoint = parse(&export(vec![instance])).rds_endpoint(None).unwrap();
    assert_eq!(endpoint.host, "legacy.x.rds.amazonaws.com");
    assert_eq!(endpoint.port, 6543);
    assert_eq!(endpoint.dbname.as_deref(), Some("legacydb"));
}

#[test]
fn pending_deletes_are_ignored_and_managed_secret_arn_is_read() {
    let mut old = rds("db", "replaced-old", encrypted());
    old["delete"] = json!(true);
    let mut new = rds("db", "current", encrypted());
    new["outputs"]["masterUserSecrets"] = json!([{
        "kmsKeyId": "arn:aws:kms:us-east-1:123:key/k",
        "secretArn": "arn:aws:secretsmanager:us-east-1:123:secret:rds!db-1234-AbCd",
        "secretStatus": "active"
    }]);
    let stack = parse(&export(vec![old, new]));
    assert_eq!(stack.rds_instances().len(), 1);
    let instance = stack.rds_instance(None).unwrap();
    assert_eq!(instance.identifier().as_deref(), Some("current"));
    assert_eq!(
        instance.master_secret_arn().as_deref(),
        Some("arn:aws:secretsmanager:us-east-1:123:secret:rds!db-1234-AbCd")
    );
}

#[test]
fn exports_are_read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.json");
    std::fs::write(&path, export(vec![rds("db", "from-file", encrypted())])).unwrap();
    let endpoint = StackExport::read(&path)
        .unwrap()
        .rds_endpoint(None)
        .unwrap();
    assert!(endpoint.host.starts_with("from-file."));
    let err = StackExport::read(&dir.path().join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("missing.json"), "{err}");
}
