//! `groundcrew watch`: the live panel in the terminal, one progress bar per
//! running task, refreshed in place. An unreachable daemon or an API error
//! is shown as "Missing / broken status", never as idle.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use super::client::Client;
use super::commands::task_line;
use super::ClientArgs;

const REFRESH: Duration = Duration::from_millis(500);

/// Redraws the panel every half second until interrupted.
pub(crate) fn watch(args: &ClientArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    let multi = MultiProgress::new();
    let header = multi.add(ProgressBar::new_spinner());
    header.set_style(ProgressStyle::with_template("{spinner} {msg}")?);
    let bar_style = ProgressStyle::with_template("  {prefix:<40} [{bar:30}] {pos}/{len} {msg}")?
        .progress_chars("=> ");
    let line_style = ProgressStyle::with_template("  {prefix:<40} {msg}")?;
    let mut bars: HashMap<u64, ProgressBar> = HashMap::new();
    loop {
        match client.get("/api/v1/panel") {
            Ok(panel) => {
                header.set_message(header_text(&panel));
                let running = panel["running"].as_array().cloned().unwrap_or_default();
                let live: Vec<u64> = running.iter().filter_map(|t| t["id"].as_u64()).collect();
                bars.retain(|id, bar| {
                    let keep = live.contains(id);
                    if !keep {
                        bar.finish_and_clear();
                    }
                    keep
                });
                for t in &running {
                    let Some(id) = t["id"].as_u64() else { continue };
                    let bar = bars
                        .entry(id)
                        .or_insert_with(|| multi.add(ProgressBar::new(0)));
                    bar.set_prefix(format!("#{id} {}", t["name"].as_str().unwrap_or("?")));
                    bar.set_message(format!(
                        "{} · {}",
                        t["stage"].as_str().unwrap_or("starting"),
                        t["trigger"].as_str().unwrap_or("")
                    ));
                    match (
                        t["progress"]["done"].as_u64(),
                        t["progress"]["total"].as_u64(),
                    ) {
                        (Some(done), Some(total)) => {
                            bar.set_style(bar_style.clone());
                            bar.set_length(total);
                            bar.set_position(done);
                        }
                        _ => bar.set_style(line_style.clone()),
                    }
                }
                let pending: Vec<String> = panel["pending"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .take(5)
                    .map(task_line)
                    .collect();
                header.set_message(format!(
                    "{}{}",
                    header_text(&panel),
                    pending
                        .iter()
                        .map(|l| format!("\n  pending {l}"))
                        .collect::<String>()
                ));
            }
            Err(e) => {
                for (_, bar) in bars.drain() {
                    bar.finish_and_clear();
                }
                header.set_message(format!("Missing / broken status: {e:#}"));
            }
        }
        header.tick();
        std::thread::sleep(REFRESH);
    }
}

fn header_text(p: &Value) -> String {
    let state = if p["state"] == "active" {
        "Active"
    } else {
        "Idle"
    };
    format!(
        "{state} — workers {}/{} — {} pending",
        p["workers"]["active"], p["workers"]["limit"], p["pending_total"]
    )
}
