//! `groundcrew show ID`: one task, whole: its request, coalescing, every
//! attempt's error and its outcome.

use serde_json::Value;

use super::client::Client;
use super::ClientArgs;

/// Prints task `id` as `GET /api/v1/tasks/{id}` gives it.
pub(crate) fn show(args: &ClientArgs, id: u64) -> anyhow::Result<()> {
    let t = Client::new(args)?.get(&format!("/api/v1/tasks/{id}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(());
    }
    print!("{}", describe(&t));
    Ok(())
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
}
