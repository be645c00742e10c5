//! `groundcrew retry --failed` and `groundcrew delete --failed|--finished`:
//! the bulk operations on the history, with the filters of `tasks`.

use serde_json::Value;

use super::client::Client;
use super::commands::{encode, filter_query, print_json};
use super::{ClientArgs, TaskFilterArgs};

/// Requests the failed tasks the filter shows again (at most `limit`, the
/// newest first; the daemon's default without it).
pub(crate) fn retry_failed(
    args: &ClientArgs,
    filter: &TaskFilterArgs,
    limit: Option<u64>,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/tasks/retry?status=failed{}", scope(filter, limit));
    let reply = Client::new(args)?.post(&path, &Value::Null)?;
    if args.json {
        return print_json(&reply);
    }
    let tasks = reply["tasks"].as_array().cloned().unwrap_or_default();
    println!(
        "retried {} of {} failed task(s)",
        tasks.iter().filter(|t| t["error"].is_null()).count(),
        reply["matched"]
    );
    for t in &tasks {
        let of = &t["retry_of"];
        match (t["outcome"].as_str(), t["error"]["message"].as_str()) {
            (_, Some(error)) => println!("  #{of}: refused: {error}"),
            (Some("merged"), _) => println!("  #{of} merged into task #{}", t["id"]),
            (Some("follow_up"), _) => println!(
                "  #{of} queued as task #{}, a follow-up behind #{}",
                t["id"], t["behind"]
            ),
            _ => println!("  #{of} queued as task #{}", t["id"]),
        }
    }
    Ok(())
}

/// Removes the tasks of `status` (failed or finished) the filter shows
/// from the history.
pub(crate) fn delete(
    args: &ClientArgs,
    status: &str,
    filter: &TaskFilterArgs,
    limit: Option<u64>,
) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/tasks?status={}{}",
        encode(status),
        scope(filter, limit)
    );
    let reply = Client::new(args)?.delete(&path)?;
    if args.json {
        return print_json(&reply);
    }
    let deleted: Vec<String> = reply["deleted"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|id| format!("#{id}"))
        .collect();
    println!(
        "deleted {} of {} {status} task(s){}{}",
        deleted.len(),
        reply["matched"],
        if deleted.is_empty() { "" } else { ": " },
        deleted.join(" ")
    );
    Ok(())
}

fn scope(filter: &TaskFilterArgs, limit: Option<u64>) -> String {
    let mut query = filter_query(filter);
    if let Some(limit) = limit {
        query.push_str(&format!("&limit={limit}"));
    }
    query
}
