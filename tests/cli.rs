//! The CLI against a running daemon: every command, its output, and its
//! errors (bad token, unreachable daemon).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{binary, Daemon};

fn cli(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .args(["--url", &daemon.base, "--data-dir"])
        .arg(&daemon.data_dir)
        .env_remove("GROUNDCREW_TOKEN")
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn submit_status_tasks_cancel_rebuild_limit_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);

    let out = ok(cli(
        &daemon,
        &[
            "submit",
            "test",
            "asn:13335",
            "--params",
            r#"{"times": 50, "round_ms": 100}"#,
        ],
    ));
    assert!(out.contains("task #1 queued"), "{out}");
    daemon.wait_panel("running", 10, |p| {
        p["running"][0]["progress"]["done"]
            .as_u64()
            .is_some_and(|d| d >= 1)
    });
    let out = ok(cli(&daemon, &["submit", "test", "asn:13335"]));
    assert!(out.contains("follow-up behind #1"), "{out}");

    let out = ok(cli(&daemon, &["status"]));
    assert!(out.starts_with("Active — workers 1/2"), "{out}");
    assert!(
        out.contains("test asn:13335")
            && out.contains("stage=counting")
            && out.contains("waiting behind #1"),
        "{out}"
    );

    let out = ok(cli(&daemon, &["status", "--json"]));
    let panel: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(panel["running"][0]["id"], 1);

    let out = ok(cli(&daemon, &["cancel", "1"]));
    assert!(
        out.contains("task #1 is canceling") && out.contains("follow-up #2 canceled too"),
        "{out}"
    );
    daemon.wait_panel("idle", 10, |p| p["state"] == "idle");
    let out = ok(cli(&daemon, &["tasks", "--status", "failed"]));
    assert!(
        out.contains("2 failed task(s)") && out.contains("canceled"),
        "{out}"
    );

    let out = ok(cli(&daemon, &["limit", "background", "0"]));
    assert!(out.contains("worker limit 0"), "{out}");
    let out = ok(cli(&daemon, &["rebuild", "country:DE", "asn:1"]));
    assert!(
        out.contains("country:DE") && out.contains("queued"),
        "{out}"
    );
    let out = ok(cli(&daemon, &["rebuild", "--all"]));
    assert!(out.contains("all") && out.contains("queued"), "{out}");
    // The pending full rebuild absorbed the two entity rebuilds.
    let out = ok(cli(&daemon, &["tasks"]));
    assert!(
        out.contains("1 pending task(s)")
            && out.contains("artifact all")
            && out.contains("merged=2"),
        "{out}"
    );
    let out = ok(cli(&daemon, &["tasks", "--status", "finished"]));
    assert!(
        out.contains("2 finished task(s)") && out.contains("merged"),
        "{out}"
    );

    let out = ok(cli(&daemon, &["reload"]));
    assert!(out.contains("reloaded"), "{out}");
}

#[test]
fn errors_are_one_clear_line_and_a_failing_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let out = cli(&daemon, &["submit", "nope", "asn:1"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown task kind \"nope\"") && stderr.contains("HTTP 400"),
        "{stderr}"
    );

    let out = cli(&daemon, &["status", "--token", "not-the-token-at-all"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));

    let out = Command::new(binary())
        .args(["status", "--url", "http://127.0.0.1:9", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot reach groundcrew at http://127.0.0.1:9"));
}

#[test]
fn watch_draws_the_live_panel_in_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    ok(cli(
        &daemon,
        &[
            "submit",
            "test",
            "country:DE",
            "--params",
            r#"{"times": 100, "round_ms": 50}"#,
        ],
    ));
    daemon.wait_panel("running", 10, |p| {
        p["running"].as_array().is_some_and(|r| !r.is_empty())
    });
    // `script` gives watch a terminal, as an operator's shell would.
    let command = format!(
        "{} watch --url {} --data-dir {}",
        binary(),
        daemon.base,
        daemon.data_dir.display()
    );
    let out = Command::new("timeout")
        .args(["3", "script", "-qfc", &command, "/dev/null"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("Active — workers 1/2"), "{screen}");
    assert!(
        screen.contains("test country:DE") && screen.contains("counting"),
        "{screen}"
    );
    drop(daemon);
    std::thread::sleep(Duration::from_millis(100));
}

/// `groundcrew completions SHELL` prints a script naming the subcommands
/// and their options; the bash one is valid bash (`bash -n`) where bash is
/// installed. An unknown shell is refused, naming the ones there are.
#[test]
fn completions_for_bash_zsh_and_fish_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(binary())
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = ok(out);
        for word in ["cancel", "rebuild", "completions", "grace"] {
            assert!(
                script.contains(word),
                "{shell} completions lack {word}:\n{script}"
            );
        }
        if shell == "bash" {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("groundcrew.bash");
            std::fs::write(&path, &script).unwrap();
            match Command::new("bash").arg("-n").arg(&path).output() {
                Ok(check) => assert!(
                    check.status.success(),
                    "bash -n refuses the completions: {}",
                    String::from_utf8_lossy(&check.stderr)
                ),
                Err(e) => eprintln!("bash not available ({e}): skipping `bash -n`"),
            }
        }
    }
    let out = Command::new(binary())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tcsh") && stderr.contains("bash") && stderr.contains("fish"),
        "{stderr}"
    );
}

#[test]
fn show_prints_one_task_whole() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    let out = ok(cli(
        &daemon,
        &[
            "submit",
            "test",
            "asn:64500",
            "--params",
            r#"{"times": 2, "round_ms": 1}"#,
        ],
    ));
    assert!(out.contains("task #1 queued"), "{out}");
    daemon.wait_panel("idle", 10, |p| p["state"] == "idle");
    let out = ok(cli(&daemon, &["show", "1"]));
    assert!(
        out.starts_with("task #1 test asn:64500: succeeded\n"),
        "{out}"
    );
    for want in [
        "triggers     operator",
        "attempts     1 (run token 1)",
        "params       {\"round_ms\":1,\"times\":2}",
        "result",
    ] {
        assert!(out.contains(want), "{want:?} missing in\n{out}");
    }
    // The task's log follows; its last line (the end) within moments.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = ok(cli(&daemon, &["show", "1"]));
        if out.contains("task ended state=succeeded") || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(out.contains("  log          "), "{out}");
    assert!(
        out.contains(" info  groundcrew_actors::") && out.contains(": task ended state=succeeded"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(cli(&daemon, &["show", "1", "--json"]))).unwrap();
    assert_eq!(json["state"], "succeeded");
    let ended = json["log"].as_array().unwrap().iter().find(|l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("task ended"))
    });
    assert_eq!(ended.unwrap()["level"], "info", "{json:#}");
    let missing = cli(&daemon, &["show", "99"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no task with id 99"));
}

#[test]
fn retry_requests_a_canceled_task_again() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    ok(cli(&daemon, &["limit", "background", "0"]));
    ok(cli(&daemon, &["submit", "test", "asn:64501"]));
    let out = cli(&daemon, &["retry", "1"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only failed or canceled tasks are retried"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(cli(&daemon, &["cancel", "1"]));
    let out = ok(cli(&daemon, &["retry", "1"]));
    assert_eq!(out.trim(), "retry of #1 queued as task #2");
    let out = ok(cli(&daemon, &["show", "2"]));
    assert!(out.contains("retry of     #1"), "{out}");
}

#[test]
fn tasks_filters_by_kind_trigger_and_target() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    ok(cli(&daemon, &["limit", "background", "0"]));
    ok(cli(&daemon, &["submit", "test", "asn:1"]));
    ok(cli(&daemon, &["submit", "test", "country:DE"]));
    let out = ok(cli(
        &daemon,
        &["tasks", "--target", "country:", "--trigger", "operator"],
    ));
    assert!(out.starts_with("1 pending task(s)"), "{out}");
    assert!(
        out.contains("test country:DE") && !out.contains("asn:1"),
        "{out}"
    );
    let out = ok(cli(&daemon, &["tasks", "--kind", "nope"]));
    assert!(out.starts_with("0 pending task(s)"), "{out}");
    let bad = cli(&daemon, &["tasks", "--since", "yesterday"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not an RFC 3339 time"));
}

#[test]
fn retry_failed_and_delete_act_on_the_filtered_failed_list() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &[]);
    ok(cli(&daemon, &["limit", "background", "0"]));
    for (id, target) in ["asn:1", "asn:2", "country:DE"].iter().enumerate() {
        ok(cli(&daemon, &["submit", "test", target]));
        ok(cli(&daemon, &["cancel", &(id + 1).to_string()]));
    }
    let out = ok(cli(&daemon, &["retry", "--failed", "--target", "asn:"]));
    assert!(out.starts_with("retried 2 of 2 failed task(s)\n"), "{out}");
    assert!(
        out.contains("  #2 queued as task #") && out.contains("  #1 queued as task #"),
        "{out}"
    );
    let out = ok(cli(
        &daemon,
        &["retry", "--failed", "--limit", "1", "--json"],
    ));
    let reply: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (&reply["matched"], &reply["tasks"][0]["retry_of"]),
        (&serde_json::json!(3), &serde_json::json!(3)),
        "{reply}"
    );
    let bad = cli(&daemon, &["retry", "1", "--kind", "test"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("go with --failed"));
    let bad = cli(&daemon, &["delete"]);
    assert!(!bad.status.success(), "delete needs --failed or --finished");

    let out = ok(cli(
        &daemon,
        &[
            "delete", "--failed", "--kind", "test", "--target", "country:",
        ],
    ));
    assert_eq!(out.trim(), "deleted 1 of 1 failed task(s): #3");
    let out = ok(cli(&daemon, &["tasks", "--status", "failed"]));
    assert!(out.starts_with("2 failed task(s)"), "{out}");
    let out = ok(cli(&daemon, &["delete", "--finished"]));
    assert_eq!(out.trim(), "deleted 0 of 0 finished task(s)");
}
