//! The one-shot CLI commands: each sends one request and prints the answer
//! for a person (or as JSON with `--json`).

use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::client::Client;
use super::{ClientArgs, TaskFilterArgs};

/// `value` as a URL query value (RFC 3986 unreserved characters kept).
pub(super) fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(super) fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// One task on one line: id, name, trigger, stage, progress, coalescing.
pub(crate) fn task_line(t: &Value) -> String {
    let mut line = format!(
        "#{:<6} {:<28} trigger={}",
        t["id"],
        t["name"].as_str().unwrap_or("?"),
        t["trigger"].as_str().unwrap_or("?")
    );
    if let Some(stage) = t["stage"].as_str() {
        line.push_str(&format!("  stage={stage}"));
    }
    if let (Some(done), Some(total)) = (
        t["progress"]["done"].as_u64(),
        t["progress"]["total"].as_u64(),
    ) {
        line.push_str(&format!("  [{done}/{total}]"));
    }
    if let Some(behind) = t["waiting_behind"].as_u64() {
        line.push_str(&format!("  waiting behind #{behind}"));
    }
    if let Some(m) = t["merged"].as_u64().filter(|&m| m > 0) {
        line.push_str(&format!("  merged={m}"));
    }
    if let Some(e) = t["error"].as_str() {
        line.push_str(&format!("  error={e}"));
    }
    line
}

/// The panel as text.
pub(crate) fn panel_text(p: &Value) -> String {
    let state = match p["state"].as_str() {
        Some("active") => "Active",
        Some("idle") => "Idle",
        _ => "Missing / broken status",
    };
    let mut out = format!(
        "{state} — workers {}/{}\n",
        p["workers"]["active"], p["workers"]["limit"]
    );
    for pool in p["pools"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  pool {}: {}/{} active, {} pending\n",
            pool["name"].as_str().unwrap_or("?"),
            pool["active"],
            pool["limit"],
            pool["pending"]
        ));
    }
    for node in p["nodes"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  node {}: {}, {} running, last heartbeat {}\n",
            node["node"].as_str().unwrap_or("?"),
            if node["alive"] == true {
                "alive"
            } else {
                "gone"
            },
            node["running"],
            node["heartbeat_at"].as_str().unwrap_or("?"),
        ));
    }
    for (title, key) in [("running", "running"), ("pending", "pending")] {
        let tasks = p[key].as_array().cloned().unwrap_or_default();
        if !tasks.is_empty() {
            out.push_str(&format!("{title}:\n"));
            for t in &tasks {
                out.push_str(&format!("  {}\n", task_line(t)));
            }
        }
    }
    out
}

pub(crate) fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let panel = Client::new(args)?.get("/api/v1/panel")?;
    if args.json {
        return print_json(&panel);
    }
    print!("{}", panel_text(&panel));
    Ok(())
}

pub(crate) fn tasks(
    args: &ClientArgs,
    status: &str,
    limit: u64,
    filter: &TaskFilterArgs,
) -> anyhow::Result<()> {
    let path = format!(
        "/api/v1/tasks?status={}&limit={limit}{}",
        encode(status),
        filter_query(filter)
    );
    let page = Client::new(args)?.get(&path)?;
    if args.json {
        return print_json(&page);
    }
    let tasks = page["tasks"].as_array().cloned().unwrap_or_default();
    println!("{} {status} task(s) in all, newest first:", page["total"]);
    for t in &tasks {
        println!(
            "  {:<9} {}",
            t["state"].as_str().unwrap_or("?"),
            task_line(t)
        );
    }
    Ok(())
}

/// The filter as query parameters, each preceded by `&`.
pub(super) fn filter_query(filter: &TaskFilterArgs) -> String {
    let mut query = String::new();
    for (name, value) in [
        ("kind", &filter.kind),
        ("trigger", &filter.trigger),
        ("target", &filter.target),
        ("since", &filter.since),
    ] {
        if let Some(v) = value {
            query.push_str(&format!("&{name}={}", encode(v)));
        }
    }
    query
}

pub(crate) fn submit(
    args: &ClientArgs,
    kind: &str,
    target: &str,
    params: Option<&str>,
) -> anyhow::Result<()> {
    let params: Value = match params {
        Some(p) => {
            serde_json::from_str(p).with_context(|| format!("--params is not valid JSON: {p}"))?
        }
        None => Value::Null,
    };
    let reply = Client::new(args)?.post(
        "/api/v1/tasks",
        &json!({"kind": kind, "target": target, "params": params, "trigger": "operator"}),
    )?;
    if args.json {
        return print_json(&reply);
    }
    match reply["outcome"].as_str() {
        Some("follow_up") => println!(
            "task #{} queued as a follow-up behind #{}",
            reply["id"], reply["behind"]
        ),
        Some("merged") => println!("merged into task #{}", reply["id"]),
        _ => println!("task #{} queued", reply["id"]),
    }
    Ok(())
}

pub(crate) fn retry(args: &ClientArgs, id: u64) -> anyhow::Result<()> {
    let reply = Client::new(args)?.post(&format!("/api/v1/tasks/{id}/retry"), &Value::Null)?;
    if args.json {
        return print_json(&reply);
    }
    match reply["outcome"].as_str() {
        Some("merged") => println!("retry of #{id} merged into task #{}", reply["id"]),
        Some("follow_up") => println!(
            "retry of #{id} queued as task #{}, a follow-up behind #{}",
            reply["id"], reply["behind"]
        ),
        _ => println!("retry of #{id} queued as task #{}", reply["id"]),
    }
    Ok(())
}

pub(crate) fn cancel(
    args: &ClientArgs,
    id: u64,
    grace: Option<u64>,
    wait: bool,
) -> anyhow::Result<()> {
    let mut query = Vec::new();
    if let Some(g) = grace {
        query.push(format!("grace_s={g}"));
    }
    if wait {
        query.push("wait=true".to_owned());
    }
    let path = match query.is_empty() {
        true => format!("/api/v1/tasks/{id}"),
        false => format!("/api/v1/tasks/{id}?{}", query.join("&")),
    };
    // With --wait the daemon answers within the grace period and 5 s.
    let client = match wait {
        true => Client::with_timeout(args, Duration::from_secs(86_400 + 60))?,
        false => Client::new(args)?,
    };
    let reply = client.delete(&path)?;
    if args.json {
        return print_json(&reply);
    }
    match reply["state"].as_str() {
        Some("canceled") => println!("task #{id} canceled"),
        Some("canceling") => match reply["grace_s"].as_f64() {
            Some(g) => println!(
                "task #{id} is canceling: signaled; canceled once its run has ended (stopped hard after {g} s)"
            ),
            None => println!("task #{id} is canceling: signaled; canceled once its run has ended"),
        },
        Some(ended @ ("succeeded" | "failed")) => {
            println!("task #{id} ended {ended} before it noticed the cancel")
        }
        _ if reply.is_null() => println!("task #{id} removed from history"),
        _ => print_json(&reply)?,
    }
    for f in reply["canceled_follow_ups"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("follow-up #{f} canceled too");
    }
    Ok(())
}

pub(crate) fn rebuild(
    args: &ClientArgs,
    all: bool,
    kind: Option<&str>,
    targets: &[String],
) -> anyhow::Result<()> {
    let mut body = if all {
        json!({"all": true})
    } else {
        json!({"targets": targets})
    };
    if !all && targets.is_empty() {
        bail!("name entities to rebuild, or pass --all");
    }
    if let Some(k) = kind {
        body["kind"] = json!(k);
    }
    let reply = Client::new(args)?.post("/api/v1/rebuild", &body)?;
    if args.json {
        return print_json(&reply);
    }
    for t in reply["tasks"].as_array().into_iter().flatten() {
        println!(
            "{:<20} task #{} {}",
            t["target"].as_str().unwrap_or("?"),
            t["id"],
            t["outcome"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub(crate) fn limit(args: &ClientArgs, pool: &str, limit: usize) -> anyhow::Result<()> {
    let reply = Client::new(args)?.put(
        &format!("/api/v1/pools/{pool}/limit"),
        &json!({"limit": limit}),
    )?;
    if args.json {
        return print_json(&reply);
    }
    println!("pool {pool}: worker limit {limit}");
    Ok(())
}

pub(crate) fn reload(args: &ClientArgs) -> anyhow::Result<()> {
    let reply = Client::new(args)?.post("/api/v1/reload", &json!({}))?;
    if args.json {
        return print_json(&reply);
    }
    println!("configuration reloaded");
    Ok(())
}
