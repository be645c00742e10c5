//! `groundcrew show ID`: one task, whole: its request, coalescing, every
//! attempt's error, its outcome and its log.

use serde_json::Value;

use super::client::Client;
use super::ClientArgs;

/// Prints task `id` as `GET /api/v1/tasks/{id}` gives it, and its lines
/// from `GET /api/v1/tasks/{id}/log` (with `--json`: as key `log`).
pub(crate) fn show(args: &ClientArgs, id: u64) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let mut t = client.get(&format!("/api/v1/tasks/{id}"))?;
    let log = client.get(&format!("/api/v1/tasks/{id}/log"))?;
    if args.json {
        t["log"] = log["lines"].clone();
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(());
    }
    print!("{}{}", describe(&t), describe_log(&log["lines"]));
    Ok(())
}

/// The log lines, one per line (a message's own line breaks indented
/// under it); nothing when there are none.
fn describe_log(lines: &Value) -> String {
    let lines = lines.as_array().map(Vec::as_slice).unwrap_or_default();
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("  log          {} line(s)\n", lines.len());
    for l in lines {
        let message = l["message"]
            .as_str()
            .unwrap_or("")
            .replace('\n', "\n        ");
        out.push_str(&format!(
            "    {} {:<5} {}: {message}\n",
            l["time"].as_str().unwrap_or("?"),
            l["level"].as_str().unwrap_or("?"),
            l["source"].as_str().unwrap_or("?"),
        ));
    }
    out
}

/// The text `show` prints, one fact per line; absent facts are left out.
fn describe(t: &Value) -> String {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let mut out = format!(
        "task #{} {}: {}\n",
        t["id"],
        t["name"].as_str().unwrap_or("?"),
        t["state"].as_str().unwrap_or("?")
    );
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<12} {value}\n"));
    let triggers: Vec<String> = t["triggers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    line("triggers", triggers.join(", "));
    line(
        "pool",
        format!(
            "{} (priority {})",
            t["pool"].as_str().unwrap_or("?"),
            t["priority"]
        ),
    );
    line(
        "attempts",
        match t["run"].as_u64() {
            Some(run) => format!("{} (run token {run})", t["attempts"]),
            None => t["attempts"].to_string(),
        },
    );
    for (label, key) in [
        ("created", "created_at"),
        ("started", "started_at"),
        ("finished", "finished_at"),
        ("not before", "run_after"),
    ] {
        if let Some(at) = text(&t[key]) {
            line(label, at);
        }
    }
    if let Some(stage) = text(&t["stage"]) {
        line("stage", stage);
    }
    if let (Some(done), Some(total)) = (
        t["progress"]["done"].as_u64(),
        t["progress"]["total"].as_u64(),
    ) {
        line("progress", format!("{done}/{total}"));
    }
    if t["merged"].as_u64().is_some_and(|m| m > 0) {
        line("merged in", format!("{} more request(s)", t["merged"]));
    }
    if let Some(of) = t["retry_of"].as_u64() {
        line("retry of", format!("#{of}"));
    }
    if let Some(into) = t["merged_into"].as_u64() {
        line("merged into", format!("#{into}"));
    }
    if let Some(behind) = t["waiting_behind"].as_u64() {
        line("waits behind", format!("#{behind}"));
    }
    if !t["params"].is_null() {
        line("params", t["params"].to_string());
    }
    if !t["result"].is_null() {
        line("result", t["result"].to_string());
    }
    if let Some(error) = text(&t["error"]) {
        line("error", error);
    }
    for e in t["errors"].as_array().into_iter().flatten() {
        line(
            &format!("attempt {}", e["attempt"]),
            format!(
                "{}: {}",
                e["at"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("?")
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_failed_task_shows_its_attempts_and_coalescing() {
        let t = json!({
            "id": 7, "name": "artifact country:DE", "state": "failed",
            "triggers": ["feed_update", "operator"], "pool": "background", "priority": 10,
            "attempts": 2, "run": 2, "created_at": "2026-12-03T10:00:00.000Z",
            "started_at": "2026-12-03T10:00:01.000Z", "finished_at": "2026-12-03T10:00:02.000Z",
            "run_after": null, "stage": "rendering", "progress": {"done": 1, "total": 4},
            "merged": 3, "merged_into": null, "waiting_behind": null,
            "params": {"fast": true}, "result": null, "error": "disk full",
            "errors": [
                {"attempt": 1, "at": "2026-12-03T10:00:00.500Z", "message": "busy"},
                {"attempt": 2, "at": "2026-12-03T10:00:02.000Z", "message": "disk full"}
            ]
        });
        let text = describe(&t);
        assert!(
            text.starts_with("task #7 artifact country:DE: failed\n"),
            "{text}"
        );
        for want in [
            "triggers     feed_update, operator",
            "pool         background (priority 10)",
            "attempts     2 (run token 2)",
            "progress     1/4",
            "merged in    3 more request(s)",
            "params       {\"fast\":true}",
            "error        disk full",
            "attempt 1    2026-12-03T10:00:00.500Z: busy",
        ] {
            assert!(text.contains(want), "{want:?} missing in\n{text}");
        }
        assert!(
            !text.contains("not before") && !text.contains("result"),
            "{text}"
        );
    }

    #[test]
    fn log_lines_show_oldest_first_with_their_source() {
        let lines = json!([
            {"time": "2026-12-03T10:00:01.000Z", "level": "info", "source": "stderr", "message": "fetching"},
            {"time": "2026-12-03T10:00:02.000Z", "level": "warn", "source": "groundcrew_actors::supervisor", "message": "failed: one\ntwo"}
        ]);
        assert_eq!(
            describe_log(&lines),
            "  log          2 line(s)\n\
             \x20   2026-12-03T10:00:01.000Z info  stderr: fetching\n\
             \x20   2026-12-03T10:00:02.000Z warn  groundcrew_actors::supervisor: failed: one\n\
             \x20       two\n"
        );
        assert_eq!(describe_log(&json!([])), "");
    }
}
