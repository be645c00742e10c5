//! The operator web page in headless Chromium against the real daemon:
//! runs the browser suite in `web-tests/` (node's test runner driving
//! playwright-core) with the binary this `cargo test` built, so that the
//! README's one test command covers the page too.

use std::process::Command;

#[test]
fn operator_page_passes_its_browser_tests() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web-tests/run.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("GROUNDCREW_BIN", env!("CARGO_BIN_EXE_groundcrew"))
        .output()
        .expect("run web-tests/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser tests failed ({}); they need node >= 20, npm and chromium \
         (web-tests/run.sh installs chromium with apt-get when run as root)\n{stdout}\n{stderr}",
        out.status
    );
    // node's runner closes with "# pass N" and "# fail 0".
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(
        !stdout.contains("# pass 0"),
        "no browser test ran:\n{stdout}"
    );
}
