//! Helpers shared by the tests that run the real binaries; `pg` is the
//! root tests' helper module (sandbox pairs, SQL one-liners, comparison).
#![allow(dead_code)]

#[path = "../../../tests/transfer_support/mod.rs"]
pub mod pg;

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `cmd` to the end with `stdin` as its standard input (a typed
/// confirmation, say), capturing stdout and stderr.
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}
