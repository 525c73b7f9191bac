//! The shell scripts a first-time user runs: `scripts/test`, `scripts/demo`
//! and each `scripts/setup.d` step. They parse, each setup step works when
//! run alone from another directory (nothing installed twice, nothing
//! created outside the repository), and `scripts/test-summary` sums cargo's
//! per-binary `test result:` lines right, failures included.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scripts() -> Vec<PathBuf> {
    let mut all = vec![
        root().join("scripts/lib.sh"),
        root().join("scripts/test"),
        root().join("scripts/test-summary"),
        root().join("scripts/demo"),
    ];
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root().join("scripts/setup.d"))
        .expect("scripts/setup.d")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    steps.sort();
    all.extend(steps);
    all
}

#[test]
fn every_script_parses() {
    for script in scripts() {
        let out = Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn summary_of(cargo_output: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cargo-test.out");
    std::fs::write(&file, cargo_output).unwrap();
    let out = Command::new(root().join("scripts/test-summary"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn test_summary_sums_every_binary_including_failures_and_ignored() {
    let output = "\
running 3 tests
test a ... ok
test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s

running 13 tests
test b ... FAILED
test result: FAILED. 10 passed; 2 failed; 1 ignored; 0 measured; 5 filtered out; finished in 1.20s

   Doc-tests herokurds_core
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.30s
";
    assert_eq!(summary_of(output), "17 passed, 2 failed, 1 skipped\n");
}

#[test]
fn test_summary_leaves_out_skipped_when_none_and_says_when_nothing_ran() {
    let output = "test result: ok. 339 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 600.00s\n";
    assert_eq!(summary_of(output), "339 passed, 0 failed\n");
    assert_eq!(
        summary_of("error: could not compile `herokurds-core`\n"),
        "(no test result found)\n"
    );
}

/// The tools scripts/test installed (or the shared ones the environment
/// names): with them set, a setup step must find everything present.
fn installed_tools() -> Vec<(&'static str, String)> {
    ["HEROKURDS_MOTO_SERVER", "HEROKURDS_AWS_CLI", "HEROKURDS_HEROKU_CLI"]
        .into_iter()
        .map(|var| {
            let value = std::env::var(var).unwrap_or_default();
            assert!(
                Path::new(&value).is_file(),
                "{var} is not set to an installed file ({value:?}): run scripts/test, which installs and sets it"
            );
            (var, value)
        })
        .collect()
}

#[test]
fn setup_steps_run_alone_from_another_directory_and_install_nothing_when_all_is_there() {
    let tools = installed_tools();
    // A scratch copy of scripts/: a step that still wanted to install would
    // do it there (or, as 20-moto.sh once did, in /.venv), not in this tree.
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    let elsewhere = scratch.path().join("elsewhere");
    std::fs::create_dir_all(repo.join("scripts/setup.d")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    for script in scripts() {
        let relative = script.strip_prefix(root()).unwrap();
        std::fs::copy(&script, repo.join(relative)).unwrap();
    }
    let mut steps: Vec<PathBuf> = std::fs::read_dir(repo.join("scripts/setup.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    steps.sort();
    assert!(steps.len() >= 4, "{steps:?}");
    for step in &steps {
        let started = std::time::Instant::now();
        let out = Command::new("bash")
            .arg(step)
            .current_dir(&elsewhere)
            .envs(tools.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("HEROKURDS_SETUP_BY")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", step.display());
        assert!(
            !stderr.contains("installing"),
            "{} wanted to install: {stderr}",
            step.display()
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{} took {:?} with nothing to install",
            step.display(),
            started.elapsed()
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
    assert!(
        leftovers.is_empty(),
        "created in the working directory: {leftovers:?}"
    );
    assert!(!repo.join(".venv").exists() && !repo.join(".cache").exists());
}

#[test]
fn test_estimate_names_what_is_missing_with_sizes() {
    // The pass scripts/test runs first, in a scratch copy without .venv or
    // .cache and with no tool given: it must list both, with sizes, and
    // install nothing.
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path();
    std::fs::create_dir_all(repo.join("scripts/setup.d")).unwrap();
    for script in scripts() {
        let relative = script.strip_prefix(root()).unwrap();
        std::fs::copy(&script, repo.join(relative)).unwrap();
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            "HEROKURDS_SETUP_BY=scripts/test; . scripts/lib.sh; \
             ( HEROKURDS_SETUP_ESTIMATE=1; for s in scripts/setup.d/*.sh; do source $s; done; setup_estimate )",
        )
        .current_dir(repo)
        .env_remove("HEROKURDS_MOTO_SERVER")
        .env_remove("HEROKURDS_AWS_CLI")
        .env_remove("HEROKURDS_HEROKU_CLI")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("scripts/test: will install (about "),
        "{stderr}"
    );
    assert!(stderr.contains("moto 5.2.1 and the aws CLI"), "{stderr}");
    assert!(stderr.contains("heroku CLI"), "{stderr}");
    assert!(!repo.join(".venv").exists() && !repo.join(".cache").exists());
}

#[test]
fn scripts_test_ends_with_the_overall_line_and_keeps_cargos_failure() {
    let tools = installed_tools();
    // scripts/test in a scratch copy, with a `cargo` that fails one test.
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path();
    std::fs::create_dir_all(repo.join("scripts/setup.d")).unwrap();
    std::fs::create_dir_all(repo.join("bin")).unwrap();
    for script in scripts() {
        let relative = script.strip_prefix(root()).unwrap();
        std::fs::copy(&script, repo.join(relative)).unwrap();
    }
    let fake = repo.join("bin/cargo");
    std::fs::write(
        &fake,
        "#!/usr/bin/env bash\n[ \"$1\" = test ] || exit 0\n\
         echo 'test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s'\n\
         echo 'test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.10s'\n\
         exit 101\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        repo.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(repo.join("scripts/test"))
        .current_dir(scratch.path())
        .env("PATH", path)
        .envs(tools.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("HEROKURDS_SETUP_BY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("8 passed, 1 failed, 2 skipped"),
        "{stdout}"
    );
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("scripts/test: ")
                && (l.contains("will install") || l.contains("nothing to download"))),
        "scripts/test does not say up front what it installs:\n{stderr}"
    );
}
