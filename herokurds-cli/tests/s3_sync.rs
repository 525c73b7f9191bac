//! Runs the real `herokurds-s3-sync` binary against a moto server, and
//! against s3s-fs as well where it implements what a test needs (tests
//! declared with `on_both_s3_servers!` run as `<name>::moto` and
//! `<name>::s3s_fs`). On moto only: a GLACIER object (s3s-fs has no storage
//! classes), SSE-KMS (no encryption), per-side profiles (s3s-fs accepts
//! one access key), keys with `+` and `%` (its listing ignores
//! `encoding-type=url`) and an ETag difference (its listing has no ETags);
//! see `herokurds_testkit::s3s_fs`.

use std::process::{Command, Output};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ServerSideEncryption, StorageClass};
use herokurds_testkit::moto::MotoServer;
use herokurds_testkit::LocalS3;
use serde_json::Value;

fn moto() -> MotoServer {
    MotoServer::start().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the binary with the moto environment (endpoint, dummy credentials).
fn s3_sync(moto: &impl LocalS3, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herokurds-s3-sync"))
        .args(args)
        .envs(moto.env_vars())
        .env_remove("AWS_PROFILE")
        .output()
        .expect("the binary runs")
}

fn json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

/// The five fields every `--json` report has (more may follow), each a
/// non-negative integer.
fn counts(v: &Value) -> [u64; 5] {
    assert!(v.is_object(), "the report is not a JSON object: {v}");
    ["copied", "skipped", "deleted", "failed", "bytes"].map(|k| {
        v.get(k)
            .unwrap_or_else(|| panic!("no {k:?} in {v}"))
            .as_u64()
            .unwrap_or_else(|| panic!("{k:?} is not a non-negative integer in {v}"))
    })
}

async fn seed(moto: &impl LocalS3, bucket: &str, keys: &[&str]) {
    moto.create_bucket(bucket).await.ok();
    let objects = keys.iter().map(|k| (k.to_string(), k.as_bytes().to_vec()));
    moto.put_objects(bucket, objects, 4).await.unwrap();
}

#[tokio::test]
async fn json_report_and_exit_zero_then_nothing_to_do() {
    let moto = moto();
    seed(&moto, "src", &["a b.txt", "c+d/e%f.txt", "ü.txt"]).await;
    moto.create_bucket("dst").await.unwrap();

    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    let bytes = ("a b.txt".len() + "c+d/e%f.txt".len() + "ü.txt".len()) as u64;
    assert_eq!(counts(&report), [3, 0, 0, 0, bytes]);
    // The five documented fields come first, in this order.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "{{\"copied\":3,\"skipped\":0,\"deleted\":0,\"failed\":0,\"bytes\":{bytes}"
        )),
        "{text}"
    );

    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--json", "--verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(counts(&report), [0, 3, 0, 0, 0]);
    assert_eq!(report["verify"]["checked"], 3);
}

herokurds_testkit::on_both_s3_servers!(
    terminated_mid_sync_stops_cleanly_and_a_rerun_finishes,
    flavor = "multi_thread",
    worker_threads = 2
);
/// SIGTERM mid-sync (as from a closed session or `kill`): the copies in
/// flight finish, the run says it was cancelled and exits 2, and running
/// again finishes the rest without copying twice.
async fn terminated_mid_sync_stops_cleanly_and_a_rerun_finishes(moto: impl LocalS3) {
    let keys: Vec<String> = (0..1000).map(|i| format!("k/{i:04}")).collect();
    moto.create_bucket("src").await.unwrap();
    let objects = keys.iter().map(|k| (k.clone(), k.as_bytes().to_vec()));
    moto.put_objects("src", objects, 8).await.unwrap();
    moto.create_bucket("dst").await.unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_herokurds-s3-sync"))
        .args(["s3://src", "s3://dst", "--json", "--concurrency", "1"])
        .envs(moto.env_vars())
        .env_remove("AWS_PROFILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while moto.keys("dst").await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing copied in 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    herokurds_testkit::send_signal(&child, libc::SIGTERM).unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("run it again"), "{stderr}");
    let done = moto.keys("dst").await.unwrap().len();
    assert!(
        done > 0 && done < keys.len(),
        "{done} copied before the stop"
    );

    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let [copied, skipped, ..] = counts(&json(&out));
    assert_eq!(skipped as usize, done);
    assert_eq!((copied + skipped) as usize, keys.len());
    assert_eq!(moto.keys("dst").await.unwrap(), keys);
}

herokurds_testkit::on_both_s3_servers!(dryrun_prints_each_action_like_aws_and_changes_nothing);
async fn dryrun_prints_each_action_like_aws_and_changes_nothing(moto: impl LocalS3) {
    seed(&moto, "src", &["keep.txt", "new file.txt"]).await;
    seed(&moto, "dst", &["keep.txt", "stale.txt"]).await;
    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--dryrun", "--delete"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        vec![
            "(dryrun) copy: s3://src/new file.txt to s3://dst/new file.txt",
            "(dryrun) delete: s3://dst/stale.txt",
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("would copy 1 objects"), "{stderr}");

    // Nothing changed: a real run still has both actions to do.
    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--delete", "--json"]);
    assert_eq!(counts(&json(&out))[..4], [1, 1, 1, 0]);
}

#[tokio::test]
async fn a_failed_key_is_named_and_the_exit_code_is_two() {
    let moto = moto();
    seed(&moto, "src", &["fine-1", "fine-2"]).await;
    moto.create_bucket("dst").await.unwrap();
    moto.s3_client()
        .put_object()
        .bucket("src")
        .key("frozen/scan 1.pdf")
        .body(ByteStream::from_static(b"cold"))
        .storage_class(StorageClass::Glacier)
        .send()
        .await
        .unwrap();
    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let report = json(&out);
    assert_eq!(counts(&report)[..4], [2, 0, 0, 1]);
    assert_eq!(report["failures"][0]["bucket"], "src");
    assert_eq!(report["failures"][0]["key"], "frozen/scan 1.pdf");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed: s3://src/frozen/scan 1.pdf: "),
        "{stderr}"
    );
}

/// A typo'd prefix lists nothing: `--delete` used to empty the destination.
#[tokio::test]
async fn delete_from_an_empty_source_exits_one_and_deletes_nothing_unless_forced() {
    let moto = moto();
    seed(&moto, "src", &["uploads/a.jpg"]).await;
    seed(&moto, "dst", &["a.jpg", "b.jpg", "c.jpg"]).await;
    let before = moto.keys("dst").await.unwrap();

    let out = s3_sync(&moto, &["s3://src/upload", "s3://dst", "--delete"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "refusing to delete all 3 keys at s3://dst",
        "s3://src/upload/ lists no keys",
        "--force-delete",
    ] {
        assert!(stderr.contains(part), "{part:?} not in {stderr}");
    }
    assert_eq!(moto.keys("dst").await.unwrap(), before);

    let out = s3_sync(
        &moto,
        &["s3://src/upload", "s3://dst", "--delete", "--dryrun"],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("(dryrun) the --delete guard would stop: refusing to delete all 3 keys"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);

    let out = s3_sync(&moto, &["s3://src/upload", "s3://dst", "--force-delete"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--force-delete needs --delete: {out:?}"
    );

    let args = [
        "s3://src/upload",
        "s3://dst",
        "--delete",
        "--force-delete",
        "--json",
    ];
    let out = s3_sync(&moto, &args);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(counts(&json(&out))[..4], [0, 0, 3, 0]);
    assert!(moto.keys("dst").await.unwrap().is_empty());
}

/// A key holding a carriage return and a colour escape must not break the
/// terminal: dry-run and failure lines show it escaped; `--json` keeps it.
/// (moto cannot store a key with `\n`: its routes do not match one. A
/// newline reaches the output through a location in an error instead.)
#[tokio::test]
async fn a_key_with_control_characters_and_an_escape_sequence_is_printed_escaped() {
    let moto = moto();
    let evil = "evil\r\x1b[31mred.txt";
    let shown = "evil\\r\\x1b[31mred.txt";
    seed(&moto, "src", &[evil]).await;
    moto.create_bucket("dst").await.unwrap();
    let frozen = "frozen\x1b[2J\u{7}.pdf";
    moto.s3_client()
        .put_object()
        .bucket("src")
        .key(frozen)
        .body(ByteStream::from_static(b"cold"))
        .storage_class(StorageClass::Glacier)
        .send()
        .await
        .unwrap();
    let raw_control = |text: &str| text.chars().any(|c| c.is_control() && c != '\n');

    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--dryrun"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("(dryrun) copy: s3://src/{shown} to s3://dst/{shown}")),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(!raw_control(&stdout), "{stdout:?}");

    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failed: s3://src/frozen\\x1b[2J\\x07.pdf: "),
        "{stderr}"
    );
    assert!(!raw_control(&stderr), "{stderr:?}");
    assert_eq!(json(&out)["failures"][0]["key"], frozen);
    let head = moto.s3_client().head_object().bucket("dst").key(evil);
    assert!(
        head.send().await.is_ok(),
        "the key itself was copied as it is"
    );

    // A newline and an escape in the (empty) source prefix, through the
    // --delete guard's error message.
    let out = s3_sync(&moto, &["s3://src/typo\n\x1b[31m", "s3://dst", "--delete"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("s3://src/typo\\n\\x1b[31m/ lists no keys"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!raw_control(&stderr), "{stderr:?}");
}

#[tokio::test]
async fn verify_difference_exits_one() {
    let moto = moto();
    seed(&moto, "src", &["same-size"]).await;
    moto.create_bucket("dst").await.unwrap();
    // Same size, different content, newer at the destination: sync skips
    // it and verify catches it.
    moto.put_objects("dst", [("same-size".to_string(), b"SAME-SIZE".to_vec())], 1)
        .await
        .unwrap();
    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("verify: s3://dst/same-size Etag"),
        "{stderr}"
    );
}

herokurds_testkit::on_both_s3_servers!(json_report_has_the_five_counts_on_every_path);
async fn json_report_has_the_five_counts_on_every_path(moto: impl LocalS3) {
    seed(&moto, "src", &["one", "two"]).await;
    seed(&moto, "dst", &["stale"]).await;
    for args in [
        &["--dryrun", "--delete"][..],
        &["--delete", "--verify"][..],
        &["--exclude", "*"][..],
    ] {
        let out = s3_sync(
            &moto,
            &[&["s3://src", "s3://dst", "--json"][..], args].concat(),
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let report = json(&out);
        // The dry run changes nothing, so the second run does the same work.
        let expected = if args[0] == "--exclude" {
            [0; 5]
        } else {
            [2, 0, 1, 0, 6]
        };
        assert_eq!(counts(&report), expected, "{args:?}: {report}");
    }
}

#[tokio::test]
async fn verify_accepts_a_kms_encrypted_copy_by_size_and_says_so() {
    let moto = moto();
    seed(&moto, "src", &["report.pdf"]).await;
    moto.create_bucket("dst").await.unwrap();
    // moto gives SSE-KMS objects MD5 ETags, real S3 does not: different
    // bytes of the same size stand in for S3's non-MD5 ETag (see
    // tests/s3_sync.rs). The copy is newer, so the sync skips it.
    moto.s3_client()
        .put_object()
        .bucket("dst")
        .key("report.pdf")
        .body(ByteStream::from_static(b"REPORT.PDF"))
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .send()
        .await
        .unwrap();
    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0 ETag differences (0 compared by ETag, 1 SSE-KMS/SSE-C encrypted compared by size only)"),
        "{stderr}"
    );
    let out = s3_sync(&moto, &["s3://src", "s3://dst", "--verify", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["verify"]["size_only"], 1, "{report}");
    assert_eq!(report["verify"]["matched"], 1, "{report}");
}

herokurds_testkit::on_both_s3_servers!(filters_apply_in_command_line_order);
async fn filters_apply_in_command_line_order(moto: impl LocalS3) {
    seed(&moto, "src", &["a.jpg", "b.png", "dir/c.jpg"]).await;
    moto.create_bucket("dst").await.unwrap();
    let out = s3_sync(
        &moto,
        &[
            "s3://src",
            "s3://dst",
            "--json",
            "--include",
            "*.jpg",
            "--exclude",
            "*",
        ],
    );
    assert_eq!(
        counts(&json(&out))[0],
        0,
        "include then exclude: exclude wins"
    );
    let out = s3_sync(
        &moto,
        &[
            "s3://src",
            "s3://dst/photos",
            "--json",
            "--exclude",
            "*",
            "--include",
            "*.jpg",
        ],
    );
    assert_eq!(counts(&json(&out))[0], 2, "{out:?}");
}

#[test]
fn bad_arguments_exit_two_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_herokurds-s3-sync"))
        .args(["bucket-without-scheme", "s3://dst"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not start with s3://"), "{stderr}");
}

#[tokio::test]
async fn each_side_uses_its_own_profile() {
    let moto = moto();
    seed(&moto, "src", &["x.txt"]).await;
    moto.create_bucket("dst").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    let endpoint = moto.endpoint_url();
    std::fs::write(
        &config,
        format!(
            "[profile old-account]\nregion = us-east-1\nendpoint_url = {endpoint}\n\
             aws_access_key_id = old\naws_secret_access_key = old\n\n\
             [profile new-account]\nregion = us-east-1\nendpoint_url = {endpoint}\n\
             aws_access_key_id = new\naws_secret_access_key = new\n"
        ),
    )
    .unwrap();
    let run = |dest_profile: &str| {
        Command::new(env!("CARGO_BIN_EXE_herokurds-s3-sync"))
            .args([
                "s3://src",
                "s3://dst",
                "--json",
                "--source-profile",
                "old-account",
            ])
            .args(["--dest-profile", dest_profile])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
            .output()
            .unwrap()
    };
    let out = run("new-account");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(counts(&json(&out))[0], 1);

    let out = run("no-such-profile");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-profile"), "{stderr}");
}
