#!/usr/bin/env bash
# Browser tests of the web page: headless Chromium (Debian package, no
# browser download) driven by playwright-core against the real daemon.
# Installs what is missing, builds the daemon unless GROUNDCREW_BIN names
# one, runs `node --test`. `cargo test` runs this through tests/browser.rs.
# Needs root (or an installed chromium), node >= 20 and npm.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd .. && pwd)"

export DEBIAN_FRONTEND=noninteractive
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium
fi
command -v node >/dev/null || { echo "web-tests: node (>= 20) is required" >&2; exit 1; }

# playwright-core only; it never downloads a browser on install.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund

# `cargo test` (tests/browser.rs) passes the binary it built; run by hand,
# this builds it.
if [ -z "${GROUNDCREW_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
    (cd "$root" && cargo build --locked -p groundcrew)
    export GROUNDCREW_BIN="$CARGO_TARGET_DIR/debug/groundcrew"
fi

node --test --test-concurrency=1 tests/
