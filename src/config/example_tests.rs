//! The shipped files in `config/` agree with the code: the example
//! configurations load to the defaults, and the systemd unit is valid and
//! waits long enough for a drain.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

fn load_shipped(name: &str) -> Config {
    Config::load(Some(&shipped(name)), std::iter::empty()).unwrap()
}

#[test]
fn example_yaml_is_the_defaults_but_for_data_dir() {
    let example = load_shipped("groundcrew.example.yaml");
    // The one deliberate difference: the systemd unit's StateDirectory.
    assert_eq!(example.data_dir, PathBuf::from("/var/lib/groundcrew"));
    let defaults = Config {
        data_dir: example.data_dir.clone(),
        ..Config::default()
    };
    assert_eq!(example, defaults);
}

#[test]
fn example_toml_matches_example_yaml() {
    assert_eq!(
        load_shipped("groundcrew.example.toml"),
        load_shipped("groundcrew.example.yaml")
    );
}

#[test]
fn example_yaml_documents_every_key() {
    let text = std::fs::read_to_string(shipped("groundcrew.example.yaml")).unwrap();
    for key in env::KEYS {
        let leaf = key.rsplit('.').next().unwrap();
        let leaf = if leaf == "<name>" { "pools" } else { leaf };
        // A key whose default depends on the machine is shown commented.
        // So is one that only some stores take, inside an example line.
        let commented = ["node"].contains(&leaf);
        let in_example = ["cluster_limit"].contains(&leaf);
        assert!(
            text.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with(&format!("{leaf}:"))
                    || (commented && l.starts_with(&format!("# {leaf}:")))
                    || (in_example && l.starts_with('#') && l.contains(&format!(" {leaf}:")))
            }),
            "{key} missing from the example"
        );
    }
}

fn unit() -> String {
    std::fs::read_to_string(shipped("groundcrew.service")).unwrap()
}

fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
}

#[test]
fn systemd_unit_waits_longer_than_drain_and_grace() {
    let unit = unit();
    let stop: u64 = unit_value(&unit, "TimeoutStopSec")
        .unwrap()
        .parse()
        .unwrap();
    let s = ShutdownConfig::default();
    assert!(stop > s.drain_timeout_s + s.cancel_grace_s);
    assert_eq!(
        unit_value(&unit, "ExecStart").as_deref(),
        Some("/usr/local/bin/groundcrew serve --config /etc/groundcrew/groundcrew.yaml")
    );
    assert_eq!(
        unit_value(&unit, "StateDirectory").as_deref(),
        Some("groundcrew")
    );
    assert_eq!(
        unit_value(&unit, "ReadWritePaths").map(PathBuf::from),
        Some(load_shipped("groundcrew.example.yaml").data_dir)
    );
}

/// Runs `systemd-analyze verify` where it is installed. The binary is not
/// installed here, so its "not executable" complaint is expected; any other
/// line (an unknown or misspelled directive) fails the test.
#[test]
fn systemd_unit_verifies_when_systemd_analyze_is_present() {
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(shipped("groundcrew.service"))
        .output()
    else {
        eprintln!("systemd-analyze not found; unit not verified");
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<_> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("/usr/local/bin/groundcrew is not executable"))
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify: {problems:#?}");
}
