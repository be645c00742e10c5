//! Entity artifacts from a real feed format, end to end against the daemon:
//! a one-line change refreshes only its entities, start-up repairs exactly
//! what is missing or corrupt, a full rebuild regenerates identical
//! content, and repeated updates coalesce.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{change_one_line, Daemon, SIGTERM};
use groundcrew::feed::{build_artifacts, changed_entities, generate_ip2asn, parse, FeedFormat};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A data directory with one ip2asn feed `geo` of `lines` generated lines.
struct Setup {
    dir: tempfile::TempDir,
    feed: PathBuf,
    config: PathBuf,
}

fn setup(lines: usize, poll_ms: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("feeds")).unwrap();
    let feed = dir.path().join("feeds/geo.tsv");
    std::fs::write(&feed, generate_ip2asn(lines, 7)).unwrap();
    let config = dir.path().join("groundcrew.yaml");
    std::fs::write(
        &config,
        format!("feeds:\n  - name: geo\n    path: feeds/geo.tsv\n    format: ip2asn\nfeed_poll_ms: {poll_ms}\n"),
    )
    .unwrap();
    Setup { dir, feed, config }
}

impl Setup {
    fn start(&self) -> Daemon {
        Daemon::start_with_feeds(
            self.dir.path(),
            &["--config", self.config.to_str().unwrap()],
        )
    }

    /// Replaces the feed file atomically, as a feed publisher should.
    fn write_feed(&self, text: &str) {
        let tmp = self.feed.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.feed).unwrap();
    }

    fn artifacts(&self) -> BTreeMap<String, Vec<u8>> {
        let root = self.dir.path().join("artifacts");
        let mut out = BTreeMap::new();
        for class in std::fs::read_dir(&root).unwrap() {
            let class = class.unwrap().path();
            for file in std::fs::read_dir(&class).unwrap() {
                let path = file.unwrap().path();
                let name = format!(
                    "{}:{}",
                    class.file_name().unwrap().to_str().unwrap(),
                    path.file_stem().unwrap().to_str().unwrap()
                );
                // A file removed between the listing and the read is gone:
                // the daemon may be removing artifacts while a test waits.
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        out.insert(name, bytes);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("{}: {e}", path.display()),
                }
            }
        }
        out
    }

    fn artifact_path(&self, entity: &str) -> PathBuf {
        let (class, id) = entity.split_once(':').unwrap();
        self.dir
            .path()
            .join("artifacts")
            .join(class)
            .join(format!("{id}.txt"))
    }
}

/// What the library says a feed's artifacts are: the oracle.
fn expected(text: &str) -> BTreeMap<String, Vec<u8>> {
    let parsed = parse(FeedFormat::Ip2asn, text.as_bytes()).unwrap();
    build_artifacts(&parsed)
        .into_iter()
        .map(|(e, c)| (e.to_string(), c))
        .collect()
}

fn wait_all_ok(d: &Daemon, secs: u64) -> Value {
    d.wait_artifacts_ok(secs, 1)
}

/// Targets of finished tasks with `trigger`, newest first.
fn targets_with_trigger(d: &Daemon, trigger: &str) -> Vec<String> {
    let (_, page) = d.call("GET", "/api/v1/tasks?status=finished&limit=1000", None);
    page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["trigger"] == trigger && t["state"] == "succeeded")
        .map(|t| t["target"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn first_start_publishes_every_entity_of_the_feed() {
    let s = setup(3000, 100);
    let d = s.start();
    let report = wait_all_ok(&d, 60);
    let want = expected(&std::fs::read_to_string(&s.feed).unwrap());
    assert_eq!(report["total"].as_u64(), Some(want.len() as u64));
    assert_eq!(
        s.artifacts(),
        want,
        "artifacts equal the feed's aggregated prefixes"
    );
    let (_, feeds) = d.call("GET", "/api/v1/feeds", None);
    assert_eq!(feeds["feeds"][0]["name"], "geo");
    assert_eq!(feeds["feeds"][0]["bad_line_count"], 0);
}

#[test]
fn one_line_feed_change_refreshes_only_the_affected_entities() {
    let s = setup(5000, 100);
    let d = s.start();
    wait_all_ok(&d, 60);
    let old_text = std::fs::read_to_string(&s.feed).unwrap();
    let before = s.artifacts();
    let (_, listing) = d.call("GET", "/api/v1/entities?limit=10000", None);
    let written_before: BTreeMap<String, Value> = listing["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["entity"].as_str().unwrap().to_owned(),
                e["written_at"].clone(),
            )
        })
        .collect();

    let new_text = change_one_line(&old_text);
    let oracle = changed_entities(
        &build_artifacts(&parse(FeedFormat::Ip2asn, old_text.as_bytes()).unwrap()),
        &build_artifacts(&parse(FeedFormat::Ip2asn, new_text.as_bytes()).unwrap()),
    );
    let affected: BTreeSet<String> = oracle
        .changed
        .iter()
        .chain(&oracle.removed)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        affected.len(),
        2,
        "the change moves one range between two countries: {affected:?}"
    );
    s.write_feed(&new_text);

    // The watcher notices the file and refreshes exactly those entities.
    let deadline = Instant::now() + Duration::from_secs(20);
    let refreshed: BTreeSet<String> = loop {
        let t: BTreeSet<String> = targets_with_trigger(&d, "feed_update")
            .into_iter()
            .collect();
        if t.len() >= affected.len() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "feed change not picked up: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(refreshed, affected);
    wait_all_ok(&d, 30);
    let after = s.artifacts();
    assert_eq!(after, expected(&new_text));
    let (_, listing) = d.call("GET", "/api/v1/entities?limit=10000", None);
    for e in listing["entities"].as_array().unwrap() {
        let name = e["entity"].as_str().unwrap();
        if !affected.contains(name) {
            assert_eq!(before.get(name), after.get(name), "{name} changed");
            assert_eq!(
                written_before.get(name),
                Some(&e["written_at"]),
                "{name} was rewritten"
            );
        }
    }
}

#[test]
fn a_deleted_artifact_is_repaired_at_restart_and_only_it() {
    let s = setup(2000, 60_000);
    let d = s.start();
    wait_all_ok(&d, 60);
    let before = s.artifacts();
    let (_, page) = d.call("GET", "/api/v1/tasks?status=finished&limit=1", None);
    let last_id = page["tasks"][0]["id"].as_u64().unwrap();
    assert!(d.signal_and_wait(SIGTERM).success());
    let victim = before.keys().nth(before.len() / 2).unwrap().clone();
    std::fs::remove_file(s.artifact_path(&victim)).unwrap();

    let d = s.start();
    wait_all_ok(&d, 60);
    let (_, page) = d.call("GET", "/api/v1/tasks?status=finished&limit=1000", None);
    let startup_now: Vec<&Value> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"].as_u64() > Some(last_id))
        .collect();
    assert_eq!(
        startup_now.len(),
        1,
        "only the deleted artifact is repaired: {startup_now:?}"
    );
    assert_eq!(
        (&startup_now[0]["target"], &startup_now[0]["trigger"]),
        (&json!(victim), &json!("startup"))
    );
    assert_eq!(s.artifacts(), before);
}

#[test]
fn a_corrupted_artifact_is_detected_and_repaired() {
    let s = setup(2000, 60_000);
    let d = s.start();
    wait_all_ok(&d, 60);
    let before = s.artifacts();
    let victim = before.keys().next().unwrap().clone();
    std::fs::write(s.artifact_path(&victim), b"10.0.0.0/8\n").unwrap();
    // Damage of the same length: only the bytes tell it apart.
    let same_length = before.keys().nth(1).unwrap().clone();
    let mut damaged = before[&same_length].clone();
    damaged[0] = if damaged[0] == b'9' { b'8' } else { b'9' };
    std::fs::write(s.artifact_path(&same_length), &damaged).unwrap();

    let (_, corrupt) = d.call("GET", "/api/v1/entities?status=corrupt", None);
    assert_eq!(corrupt["total"], 2, "{corrupt}");
    let listed: BTreeSet<&str> = corrupt["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([victim.as_str(), same_length.as_str()])
    );
    let (status, reply) = d.call(
        "POST",
        "/api/v1/entities/rebuild",
        Some(json!({"status": ["corrupt"]})),
    );
    assert_eq!((status, &reply["entities"]), (202, &json!(2)), "{reply}");
    wait_all_ok(&d, 30);
    assert_eq!(s.artifacts(), before);
    let repaired: BTreeSet<String> = targets_with_trigger(&d, "operator").into_iter().collect();
    assert_eq!(repaired, BTreeSet::from([victim, same_length]));
}

#[test]
fn operator_rebuild_of_all_regenerates_identical_content() {
    let s = setup(3000, 60_000);
    let d = s.start();
    wait_all_ok(&d, 60);
    let before = s.artifacts();
    // Even with every file gone, one rebuild restores them byte for byte.
    for entity in before.keys() {
        std::fs::remove_file(s.artifact_path(entity)).unwrap();
    }
    let (status, reply) = d.call("POST", "/api/v1/rebuild", Some(json!({"all": true})));
    assert_eq!(status, 202, "{reply}");
    wait_all_ok(&d, 60);
    assert_eq!(s.artifacts(), before);
    let (_, page) = d.call("GET", "/api/v1/tasks?status=finished&limit=5", None);
    let all = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"] == "all" && t["trigger"] == "operator")
        .unwrap();
    assert_eq!(
        all["result"]["written"].as_u64(),
        Some(before.len() as u64),
        "{all}"
    );
    // Issue 16: each entity names the execution that wrote it, with its
    // fencing token, and its hash is the SHA-256 of the file.
    let listing = d.wait_artifacts_ok(60, 1000);
    let entities = listing["entities"].as_array().unwrap();
    assert_eq!(entities.len(), before.len());
    for e in entities {
        assert_eq!((&e["task"], &e["run"]), (&all["id"], &json!(1)), "{e}");
        let content = &before[e["entity"].as_str().unwrap()];
        let hash: String = Sha256::digest(content)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(e["hash"], hash.as_str(), "{e}");
    }
}

#[test]
fn repeated_feed_updates_coalesce_and_a_large_change_becomes_one_full_rebuild() {
    let s = setup(6000, 60_000);
    // The whole new feed below drops most entities, which the guard would
    // refuse by default.
    let config = std::fs::read_to_string(&s.config).unwrap();
    let config = config.replace(
        "format: ip2asn\n",
        "format: ip2asn\n    max_entity_drop_ratio: 1\n",
    );
    std::fs::write(&s.config, config).unwrap();
    let d = s.start();
    wait_all_ok(&d, 60);
    // Pause the pool so that the refreshes stay queued.
    let (status, _) = d.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 0})),
    );
    assert_eq!(status, 200);
    let text = std::fs::read_to_string(&s.feed).unwrap();
    let once = change_one_line(&text);
    s.write_feed(&once);
    let (status, first) = d.call("POST", "/api/v1/feeds/geo/updated", None);
    assert_eq!(
        (status, &first["changed"], &first["tasks"]),
        (202, &json!(2), &json!(2)),
        "{first}"
    );
    // The same line changed again: the same two entities, merged into the
    // queued refreshes.
    s.write_feed(&once.replacen("\tZZ\t", "\tYY\t", 1));
    let (_, second) = d.call("POST", "/api/v1/feeds/geo/updated", None);
    assert_eq!(second["tasks"], 2, "{second}");
    let panel = d.wait_panel("queued refreshes", 5, |p| {
        p["pending_total"].as_u64() == Some(3)
    });
    let merged: Vec<u64> = panel["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["merged"].as_u64().unwrap())
        .collect();
    // The old country, ZZ then YY: the old country's refresh was merged once.
    assert!(merged.contains(&1), "{panel}");

    // A whole new feed changes most entities: one full rebuild, which
    // absorbs the pending per-entity refreshes.
    let fresh = generate_ip2asn(6000, 99);
    s.write_feed(&fresh);
    let (_, third) = d.call("POST", "/api/v1/feeds/geo/updated", None);
    assert_eq!(third["tasks"], 1, "{third}");
    let panel = d.wait_panel("one full rebuild", 5, |p| p["pending_total"] == 1);
    assert_eq!(panel["pending"][0]["target"], "all");
    // The three absorbed tasks stood for four requests.
    assert_eq!(panel["pending"][0]["merged"].as_u64(), Some(4), "{panel}");

    d.call(
        "PUT",
        "/api/v1/pools/background/limit",
        Some(json!({"limit": 2})),
    );
    wait_all_ok(&d, 60);
    assert_eq!(s.artifacts(), expected(&fresh));
}

#[test]
fn health_transition_refreshes_the_feed_and_bad_lines_are_reported() {
    let s = setup(500, 60_000);
    let mut text = std::fs::read_to_string(&s.feed).unwrap();
    text.push_str("not a line\n1.2.3.4\t1.2.3.0\t5\tDE\tREVERSED\n");
    s.write_feed(&text);
    let d = s.start();
    wait_all_ok(&d, 60);
    let (_, feeds) = d.call("GET", "/api/v1/feeds", None);
    let geo = &feeds["feeds"][0];
    assert_eq!(geo["bad_line_count"], 2, "{geo}");
    assert_eq!(geo["bad_lines"][0]["line"], 501);
    assert_eq!(geo["bad_lines"][1]["line"], 502);

    let (status, down) = d.call(
        "POST",
        "/api/v1/feeds/geo/health",
        Some(json!({"healthy": false})),
    );
    assert_eq!((status, &down["tasks"]), (200, &json!(0)), "{down}");
    // While unhealthy, a change is read but its refresh is held back...
    s.write_feed(&change_one_line(&text));
    let (_, held) = d.call("POST", "/api/v1/feeds/geo/updated", None);
    assert_eq!(
        (&held["held"], &held["tasks"]),
        (&json!(true), &json!(0)),
        "{held}"
    );
    // ...and the transition back to healthy refreshes the feed's entities.
    let (_, up) = d.call(
        "POST",
        "/api/v1/feeds/geo/health",
        Some(json!({"healthy": true})),
    );
    assert!(up["tasks"].as_u64().unwrap() >= 1, "{up}");
    wait_all_ok(&d, 60);
    assert!(!targets_with_trigger(&d, "health_transition").is_empty());
    assert_eq!(s.artifacts(), expected(&change_one_line(&text)));
    let (status, _) = d.call("POST", "/api/v1/feeds/nope/updated", None);
    assert_eq!(status, 404);
}

#[test]
fn a_reload_that_adds_a_feed_refreshes_its_entities_with_config_reload() {
    let s = setup(500, 60_000);
    let d = s.start();
    wait_all_ok(&d, 60);
    // A CSV feed with an entity the first feed lacks and one it shares.
    std::fs::write(
        s.dir.path().join("feeds/extra.csv"),
        "prefix,country,asn\n198.51.100.0/24,ZZ,64500\n",
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&s.config).unwrap();
    config = config.replace(
        "feed_poll_ms",
        "  - name: extra\n    path: feeds/extra.csv\n    format: csv\nfeed_poll_ms",
    );
    std::fs::write(&s.config, config).unwrap();
    let (status, body) = d.call("POST", "/api/v1/reload", None);
    assert_eq!(status, 200, "{body}");
    wait_all_ok(&d, 30);
    let refreshed: BTreeSet<String> = targets_with_trigger(&d, "config_reload")
        .into_iter()
        .collect();
    assert_eq!(
        refreshed,
        BTreeSet::from(["asn:64500".to_owned(), "country:ZZ".to_owned()])
    );
    assert_eq!(
        std::fs::read(s.artifact_path("country:ZZ")).unwrap(),
        b"198.51.100.0/24\n"
    );
    let (_, feeds) = d.call("GET", "/api/v1/feeds", None);
    assert_eq!(feeds["feeds"].as_array().unwrap().len(), 2, "{feeds}");
}

/// Drops every line of one AS: that entity leaves the feed.
fn drop_one_as(text: &str) -> (String, String) {
    let before = expected(text);
    for line in text.lines() {
        let asn = line.split('\t').nth(2).unwrap();
        let entity = format!("asn:{asn}");
        if !before.contains_key(&entity) {
            continue;
        }
        let kept: String = text
            .lines()
            .filter(|l| l.split('\t').nth(2) != Some(asn))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!expected(&kept).contains_key(&entity));
        return (kept, entity);
    }
    panic!("no AS entity in the feed");
}

#[test]
fn held_back_removals_are_applied_when_the_feed_turns_healthy() {
    let s = setup(500, 60_000);
    let d = s.start();
    wait_all_ok(&d, 60);
    let text = std::fs::read_to_string(&s.feed).unwrap();
    let (status, _) = d.call(
        "POST",
        "/api/v1/feeds/geo/health",
        Some(json!({"healthy": false})),
    );
    assert_eq!(status, 200);
    // Two held-back updates: the first removes an entity, the second
    // changes others; the held-back diff is the two merged.
    let (without, gone) = drop_one_as(&text);
    s.write_feed(&without);
    let (_, held) = d.call("POST", "/api/v1/feeds/geo/updated", None);
    assert_eq!(held["held"], json!(true), "{held}");
    assert!(held["removed"].as_u64() >= Some(1), "{held}");
    let last = change_one_line(&without);
    s.write_feed(&last);
    let (_, held) = d.call("POST", "/api/v1/feeds/geo/updated", None);
    assert_eq!(held["held"], json!(true), "{held}");
    assert!(
        s.artifacts().contains_key(&gone),
        "held back: {gone} still there"
    );

    let (status, up) = d.call(
        "POST",
        "/api/v1/feeds/geo/health",
        Some(json!({"healthy": true})),
    );
    assert_eq!(status, 200, "{up}");
    wait_all_ok(&d, 60);
    let artifacts = s.artifacts();
    assert!(
        !artifacts.contains_key(&gone),
        "{gone} kept its old artifact"
    );
    assert_eq!(artifacts, expected(&last));
}

/// A feed file replaced by an empty file, an HTML error page or lines that
/// do not parse is refused by the feed's guard: every artifact stays, the
/// feed shows as unhealthy with the reason, a metric counts it, and an
/// operator's accept puts the reading in force.
#[test]
fn garbage_feed_readings_are_refused_and_keep_every_artifact() {
    let s = setup(400, 60_000);
    let d = s.start();
    wait_all_ok(&d, 60);
    let before = s.artifacts();
    assert!(!before.is_empty());

    let html = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body>\n</html>\n";
    let mut garbage_lines = String::new();
    for i in 0..50 {
        garbage_lines.push_str(&format!("not a range {i}\n"));
    }
    for (what, text, reason) in [
        ("empty file", "", "entities"),
        ("HTML error page", html, "lines could not be read"),
        (
            "bad lines",
            garbage_lines.as_str(),
            "lines could not be read",
        ),
    ] {
        s.write_feed(text);
        let (status, update) = d.call("POST", "/api/v1/feeds/geo/updated", None);
        assert_eq!(status, 202, "{what}: {update}");
        let refused = update["refused"].as_str().unwrap_or_default();
        assert!(refused.contains(reason), "{what}: {update}");
        assert_eq!(update["tasks"], 0, "{what}: {update}");
        let (_, feeds) = d.call("GET", "/api/v1/feeds", None);
        let geo = &feeds["feeds"][0];
        assert_eq!(geo["healthy"], false, "{what}: {geo}");
        assert!(
            geo["refused"].as_str().is_some_and(|r| r.contains(reason)),
            "{what}: {geo}"
        );
        assert_eq!(d.call("GET", "/api/v1/panel", None).1["state"], "idle");
        assert_eq!(s.artifacts(), before, "{what} changed artifacts");
    }
    let (_, metrics) = d.call("GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains(
            r#"groundcrew_feed_readings_refused_total{feed="geo",reason="entity_drop"} 1"#
        ) && metrics
            .contains(r#"groundcrew_feed_readings_refused_total{feed="geo",reason="bad_lines"} 2"#),
        "{metrics}"
    );

    // A good reading is in force again by itself and clears the refusal.
    let text = generate_ip2asn(400, 7);
    s.write_feed(&change_one_line(&text));
    let (_, update) = d.call("POST", "/api/v1/feeds/geo/updated", None);
    assert!(update["refused"].is_null(), "{update}");
    wait_all_ok(&d, 60);
    assert_eq!(s.artifacts(), expected(&change_one_line(&text)));
    let (status, body) = d.call("POST", "/api/v1/feeds/geo/accept", None);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );

    // An operator accepts an empty feed deliberately: its artifacts go.
    s.write_feed("");
    d.call("POST", "/api/v1/feeds/geo/updated", None);
    let (status, update) = d.call("POST", "/api/v1/feeds/geo/accept", None);
    assert_eq!(status, 202, "{update}");
    assert!(
        update["refused"].is_null() && update["removed"].as_u64() > Some(0),
        "{update}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.artifacts().is_empty() {
        assert!(
            Instant::now() < deadline,
            "artifacts of the accepted empty feed remain"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, feeds) = d.call("GET", "/api/v1/feeds", None);
    assert_eq!(feeds["feeds"][0]["healthy"], true, "{feeds}");
    let (_, metrics) = d.call("GET", "/metrics", None);
    assert!(metrics
        .as_str()
        .unwrap()
        .contains(r#"groundcrew_feed_healthy{feed="geo"} 1"#));
    let (status, _) = d.call("POST", "/api/v1/feeds/nope/accept", None);
    assert_eq!(status, 404);
}

/// A feed file emptied while the daemon was stopped is refused at the next
/// start: the start-up repair would otherwise remove every artifact as
/// orphaned.
#[test]
fn a_feed_emptied_while_stopped_keeps_every_artifact_at_the_next_start() {
    let s = setup(300, 60_000);
    let d = s.start();
    wait_all_ok(&d, 60);
    let before = s.artifacts();
    d.signal_and_wait(SIGTERM);

    s.write_feed("");
    let d = s.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    let geo = loop {
        let (_, feeds) = d.call("GET", "/api/v1/feeds", None);
        let geo = feeds["feeds"][0].clone();
        if geo["refused"].is_string() && d.call("GET", "/api/v1/panel", None).1["state"] == "idle" {
            break geo;
        }
        assert!(
            Instant::now() < deadline,
            "the empty reading was not refused: {geo}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(geo["healthy"], false, "{geo}");
    assert_eq!(
        s.artifacts(),
        before,
        "the start-up repair removed artifacts"
    );
}
