#!/usr/bin/env bash
# The whole test suite, as CI runs it (`.ci/run` calls exactly this).
# Installs what the tests need when it is missing, then: fmt, clippy, fuzz-target build,
# the scripts' own tests, every test (unit, property, and the real-peer interop tests).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
# shellcheck source=scripts/lib/deb.sh
. scripts/lib/deb.sh

# Debian packages the real-peer tests drive. Checked with dpkg so a fresh machine gets
# them and a prepared one skips the slow apt step.
DEB_PACKAGES=(
  ffmpeg
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-rtsp-server-1.0
  iproute2 iptables
  keepalived  # the balancer failover test runs a real VRRP pair in two namespaces
  kamailio sip-tester rtpengine-daemon libsqlite3-dev postgresql
  systemd  # systemd-analyze verifies config/mediagate.service
  prometheus  # promtool check metrics parses the admin API's /metrics
  clang  # compiles the relay's eBPF fast path (crates/ebpf/bpf); without it the build has none
  curl openssl  # the admin API's mutual TLS test: certificates and an HTTPS client
  chromium  # the dashboard test drives headless Chromium over the DevTools protocol
  slapd ldap-utils  # the edge's LDAP logins: a throwaway OpenLDAP server per test
  freeradius  # the dispatcher's RADIUS accounting: a throwaway FreeRADIUS per test
)
install_missing_debs "${DEB_PACKAGES[@]}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz (builds the fuzz targets)"
  cargo install cargo-fuzz --locked
fi

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

log "fuzz targets build (stable toolchain, no sanitizer)"
(cd fuzz && cargo fuzz build -s none)

log "script tests (python, a second each)"
python3 scripts/test-rtsp-wire-latency.py

# The relay benchmark test drives the load generator binary, which `cargo test` does
# not build for another package.
log "build mediagate-loadgen (used by the relay load test)"
cargo build -p mediagate-loadgen

log "cargo test: build every test binary"
tests_json="$(mktemp)"
trap 'rm -f "$tests_json"' EXIT
cargo test --workspace --no-run --message-format=json-render-diagnostics >"$tests_json"

# Most of the suite's time is real-peer tests waiting on real-time media, so the test
# binaries run a few at a time (TEST_JOBS, default 3), longest first; each binary still
# runs its own tests as cargo would.
log "cargo test (unit, property and real-peer interop tests; ${TEST_JOBS:-3} binaries at a time)"
python3 scripts/run-tests.py "$tests_json"

log "doc tests"
cargo test --workspace --doc
