//! A reload replaces the token set exactly: a token removed from the
//! configuration file is refused (401) right after `POST /api/v1/reload`
//! or `SIGHUP`, and emptying `tokens:` leaves only the generated admin
//! token of the data directory.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, SIGHUP};

const OPS: &str = "operate-token-0123456789abcdef";
const CI: &str = "ci-token-0123456789abcdef-removed";

fn write_config(path: &std::path::Path, tokens: &[(&str, &str)]) {
    let mut text = String::from("pools:\n  background: 2\n");
    if tokens.is_empty() {
        text.push_str("tokens: []\n");
    } else {
        text.push_str("tokens:\n");
        for (name, token) in tokens {
            text.push_str(&format!(
                "  - name: {name}\n    token: {token}\n    role: operate\n"
            ));
        }
    }
    std::fs::write(path, text).unwrap();
}

fn status_with(daemon: &Daemon, token: &str) -> u16 {
    daemon.call_as(Some(token), "GET", "/api/v1/whoami", None).0
}

#[test]
fn removed_token_is_refused_right_after_an_api_reload() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("groundcrew.yaml");
    write_config(&config, &[("ops", OPS), ("ci", CI)]);
    let daemon = Daemon::start(dir.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(status_with(&daemon, CI), 200);

    write_config(&config, &[("ops", OPS)]);
    let (status, body) = daemon.call_as(Some(OPS), "POST", "/api/v1/reload", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        status_with(&daemon, CI),
        401,
        "the removed token still works"
    );
    assert_eq!(status_with(&daemon, OPS), 200);

    // Emptying `tokens:` leaves the generated admin token alone.
    write_config(&config, &[]);
    let (status, body) = daemon.call_as(Some(OPS), "POST", "/api/v1/reload", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        status_with(&daemon, OPS),
        401,
        "an emptied token list kept its token"
    );
    let generated = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    assert_eq!(status_with(&daemon, generated.trim()), 200);
}

#[test]
fn emptied_tokens_are_refused_right_after_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("groundcrew.yaml");
    write_config(&config, &[("ops", OPS)]);
    let daemon = Daemon::start(dir.path(), &["--config", config.to_str().unwrap()]);
    assert_eq!(status_with(&daemon, OPS), 200);

    write_config(&config, &[]);
    daemon.signal(SIGHUP);
    // SIGHUP has no answer: wait (bounded) for the generated token, which
    // exists and works only once the reload is applied.
    let token_file = dir.path().join("admin.token");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(&token_file) {
            if !t.trim().is_empty() && status_with(&daemon, t.trim()) == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not apply the token change"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        status_with(&daemon, OPS),
        401,
        "the removed token still works"
    );
}

/// An event stream opened with a token ends once a reload removes the
/// token, instead of streaming panel updates to its holder.
#[test]
fn open_event_stream_of_a_removed_token_is_closed_by_the_reload() {
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("groundcrew.yaml");
    write_config(&config, &[("ops", OPS), ("ci", CI)]);
    let daemon = Daemon::start(dir.path(), &["--config", config.to_str().unwrap()]);

    let request = ureq::http::Request::builder()
        .uri(format!("{}/api/v1/panel/events", daemon.base))
        .header("Authorization", format!("Bearer {CI}"))
        .body(())
        .unwrap();
    let response = Daemon::agent().run(request).unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut body = response.into_body().into_reader();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match body.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.send(Ok(()));
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                    return;
                }
            }
        }
    });
    // The stream stays open while the token is in force.
    assert!(rx.recv_timeout(Duration::from_millis(800)).is_err());

    write_config(&config, &[("ops", OPS)]);
    let (status, body) = daemon.call_as(Some(OPS), "POST", "/api/v1/reload", None);
    assert_eq!(status, 200, "{body}");
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the stream failed instead of ending: {e}"),
        Err(_) => panic!("the stream of a removed token is still open"),
    }
}
