//! The shipped monitoring files: `config/prometheus-rules.yaml` passes
//! `promtool check rules` and its stuck-pool alert fires (and stays quiet)
//! as `promtool test rules` says, `config/grafana-dashboard.json` is a
//! dashboard whose panels all query a datasource, and every metric either
//! file queries is in a real daemon's `/metrics`.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::Daemon;
use serde_json::{json, Value};

const RULES: &str = "config/prometheus-rules.yaml";
const DASHBOARD: &str = "config/grafana-dashboard.json";

/// Metrics the daemon exposes only after their first event, which a test
/// cannot cause through the binary: a refused feed reading needs a feed
/// that serves garbage (tests/entities.rs covers it). They must at least
/// be registered by name in the collectors' source.
const AFTER_FIRST_EVENT: &[&str] = &["groundcrew_feed_readings_refused_total"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `promtool` binary, or `None` (with a message) when it is missing
/// outside CI; under `CI=true` a missing promtool fails the test.
fn promtool() -> Option<&'static str> {
    for candidate in ["/usr/bin/promtool", "promtool"] {
        if Command::new(candidate).arg("--version").output().is_ok() {
            return Some(candidate);
        }
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "promtool is required under CI=true (.ci/run installs it)"
    );
    eprintln!("promtool not installed: skipping");
    None
}

fn run_promtool(promtool: &str, args: &[&str]) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_rules_pass_promtool_check_rules() {
    let Some(promtool) = promtool() else { return };
    run_promtool(promtool, &["check", "rules", RULES]);
}

/// Four daemons over 40 minutes: `stuck` has tasks pending and its
/// finished counter flat, `busy` has as many pending but finishes one a
/// minute, `idle` has nothing pending, `fresh` has tasks pending and never
/// finished one. Before 15 minutes nothing fires; at 30 minutes `stuck` and
/// `fresh` do, `busy` and `idle` do not.
#[test]
fn the_stuck_pool_alert_fires_only_for_a_pool_that_waits_without_progress() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let alert = |instance: &str, pending: u32| {
        format!(
            "          - exp_labels: {{severity: warning, instance: \"{instance}\", pool: default}}\n            \
             exp_annotations:\n              \
             summary: \"groundcrew pool default on {instance} has tasks waiting and nothing finished for 15 minutes\"\n              \
             description: \"{pending} tasks pending; check the panel, the worker limit and running tasks.\"\n"
        )
    };
    let test = format!(
        "rule_files:\n  - {rules}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
         {series}    alert_rule_test:\n\
         \x20     - eval_time: 14m\n        alertname: GroundcrewPoolStuck\n        exp_alerts: []\n\
         \x20     - eval_time: 30m\n        alertname: GroundcrewPoolStuck\n        exp_alerts:\n{fresh}{stuck}",
        rules = root().join(RULES).display(),
        series = [
            ("groundcrew_tasks_pending", "stuck", "pool=\"default\"", "3x40"),
            (
                "groundcrew_tasks_finished_total",
                "stuck",
                "kind=\"test\",outcome=\"succeeded\"",
                "5x40"
            ),
            ("groundcrew_tasks_pending", "busy", "pool=\"default\"", "3x40"),
            (
                "groundcrew_tasks_finished_total",
                "busy",
                "kind=\"test\",outcome=\"succeeded\"",
                "0+1x40"
            ),
            ("groundcrew_tasks_pending", "idle", "pool=\"default\"", "0x40"),
            ("groundcrew_tasks_pending", "fresh", "pool=\"default\"", "2x40"),
        ]
        .iter()
        .map(|(name, instance, labels, values)| format!(
            "      - series: '{name}{{instance=\"{instance}:7878\",{labels}}}'\n        values: '{values}'\n"
        ))
        .collect::<String>(),
        fresh = alert("fresh:7878", 2),
        stuck = alert("stuck:7878", 3),
    );
    let path = dir.path().join("stuck_pool_test.yaml");
    std::fs::write(&path, test).unwrap();
    run_promtool(promtool, &["test", "rules", path.to_str().unwrap()]);
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(root().join(DASHBOARD)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

#[test]
fn every_dashboard_panel_queries_the_prometheus_datasource_variable() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable: {variables:#?}"
    );
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        let title = &panel["title"];
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {title} has no datasource"
        );
        let targets = panel["targets"].as_array().map_or(&[][..], Vec::as_slice);
        assert!(!targets.is_empty(), "panel {title} has no target");
        for target in targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "panel {title} has a target without an expression: {target}"
            );
        }
    }
}

/// Every `groundcrew_*` name in `text`, histogram series suffixes stripped.
fn metric_names(text: &str, into: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(at) = rest.find("groundcrew_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..len];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        into.insert(name.to_owned());
        rest = &tail[len..];
    }
}

/// The metric names the rules' and the dashboard's expressions query.
fn queried_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let rules: Value =
        serde_norway::from_str(&std::fs::read_to_string(root().join(RULES)).unwrap()).unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            metric_names(rule["expr"].as_str().unwrap(), &mut names);
        }
    }
    let dashboard = dashboard();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            metric_names(target["expr"].as_str().unwrap(), &mut names);
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        metric_names(&variable["query"].to_string(), &mut names);
    }
    names
}

/// The metric families in a Prometheus text exposition.
fn exposed(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A daemon with the sample feed, after a `test` task succeeded and a
/// command that ignores SIGTERM was canceled and stopped hard, so that the
/// labelled series exist.
#[test]
fn every_metric_the_rules_and_the_dashboard_query_is_in_metrics() {
    let queried = queried_metrics();
    for expected in [
        "groundcrew_tasks_pending",
        "groundcrew_tasks_finished_total",
        "groundcrew_task_duration_seconds",
        "groundcrew_feed_healthy",
    ] {
        assert!(
            queried.contains(expected),
            "{expected} not found in {queried:?}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let stubborn = dir.path().join("stubborn.sh");
    std::fs::write(
        &stubborn,
        "#!/bin/sh\ntrap '' TERM\necho '{\"stage\": \"stubborn\"}'\nwhile true; do sleep 1; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&stubborn, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        format!(
            "kinds:\n  - name: stubborn\n    command: [{}]\n",
            stubborn.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with_feeds(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let submit = |kind: &str, params: Value| {
        let (status, body) = daemon.call(
            "POST",
            "/api/v1/tasks",
            Some(json!({"kind": kind, "target": "asn:1", "params": params})),
        );
        assert_eq!(status, 202, "{body}");
        body["id"].as_u64().unwrap()
    };
    let test = submit("test", json!({"times": 1, "round_ms": 1}));
    let stubborn = submit("stubborn", Value::Null);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, task) = daemon.call("GET", &format!("/api/v1/tasks/{stubborn}"), None);
        if task["stage"] == "stubborn" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stubborn never ran: {task:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (status, body) = daemon.call(
        "DELETE",
        &format!("/api/v1/tasks/{stubborn}?grace_s=1&wait=true"),
        None,
    );
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("canceled")),
        "{body}"
    );
    daemon.wait_panel("idle", 30, |p| p["state"] == "idle");
    let (_, task) = daemon.call("GET", &format!("/api/v1/tasks/{test}"), None);
    assert_eq!(task["state"], "succeeded", "{task:#}");

    let metrics = Daemon::agent()
        .get(format!("{}/metrics", daemon.base))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    let exposed = exposed(&metrics);
    let registered = [
        include_str!("../actors/src/metrics.rs"),
        include_str!("../src/entities/feeds.rs"),
    ]
    .concat();
    let missing: Vec<_> = queried
        .iter()
        .filter(|name| {
            if AFTER_FIRST_EVENT.contains(&name.as_str()) {
                !registered.contains(&format!("\"{name}\""))
            } else {
                !exposed.contains(*name)
            }
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not in /metrics: {missing:?}\n{metrics}"
    );
}
