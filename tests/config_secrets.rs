//! Configuration errors never echo secrets: bad `GROUNDCREW_KINDS`,
//! `GROUNDCREW_FEEDS` and `GROUNDCREW_TOKENS` values, and bad file values
//! under `tokens` and `kinds[].env`, are named by key with the value
//! hidden, whatever its type.

mod common;

use std::process::Command;

use common::binary;

const SECRET: &str = "s3cr3tvalue";

/// Runs `serve` with `env` and a config file holding `file`, and returns
/// its stderr; it must fail at start.
fn refused(env: &[(&str, &str)], file: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(&config, file).unwrap();
    let out = Command::new(binary())
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with {env:?} / {file}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_environment_lists_do_not_echo_their_values() {
    for (var, value) in [
        (
            "GROUNDCREW_KINDS",
            format!("[{{name: x, command: [a], env: {{K: \"{SECRET}\"}}, bogus: 1}}]"),
        ),
        (
            "GROUNDCREW_KINDS",
            format!("[{{name: x, command: [a], env: \"{SECRET}\"}}]"),
        ),
        (
            "GROUNDCREW_FEEDS",
            format!("[{{name: \"{SECRET}\", path: 7, format: 12}}]"),
        ),
        (
            "GROUNDCREW_TOKENS",
            format!("[{{name: ci, token: {SECRET}, role: \"{SECRET}\"}}]"),
        ),
    ] {
        let stderr = refused(&[(var, &value)], "");
        assert!(stderr.contains(var), "{stderr}");
        assert!(!stderr.contains(SECRET), "{var} echoed its value: {stderr}");
    }
}

#[test]
fn bad_file_values_under_tokens_and_kind_env_are_hidden_whatever_their_type() {
    for file in [
        format!("tokens: \"{SECRET}\"\n"),
        "tokens: 424242424242\n".to_owned(),
        format!("tokens:\n  - name: ci\n    token: [\"{SECRET}\"]\n    role: read\n"),
        format!(
            "tokens:\n  - name: ci\n    token: {SECRET}{SECRET}{SECRET}\n    role: \"{SECRET}\"\n"
        ),
        format!("kinds:\n  - name: x\n    command: [a]\n    env: \"{SECRET}\"\n"),
        "kinds:\n  - name: x\n    command: [a]\n    env: 424242424242\n".to_owned(),
        format!("kinds:\n  - name: x\n    command: [a]\n    env:\n      K: [\"{SECRET}\"]\n"),
    ] {
        let stderr = refused(&[], &file);
        assert!(stderr.contains("groundcrew.yaml"), "{stderr}");
        assert!(
            !stderr.contains(SECRET) && !stderr.contains("424242424242"),
            "{file} echoed its value: {stderr}"
        );
    }
}
