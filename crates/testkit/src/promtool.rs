//! `promtool check metrics` (Debian package `prometheus`) on an exposition in the
//! classic text format (promtool 2.42 does not read OpenMetrics): the
//! Prometheus project's own parser and linter (names, `_total` suffixes, HELP text,
//! histogram shape), so a test checks what a real scraper would accept.

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `promtool check metrics` on `text`.
///
/// # Panics
/// When promtool is missing (with how to install it; a test that cannot check never
/// passes), or when it reports any problem (its report is in the message).
pub fn check_metrics(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run promtool ({e}); install Debian's `prometheus` package \
             (scripts/test.sh does) to check the metrics exposition"
        ),
    };
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(text.as_bytes())
        .expect("promtool reads its input");
    drop(stdin);
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition ({}):\n{}{}\n--- exposition ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "_total")]
    fn a_counter_without_total_is_refused() {
        check_metrics("# HELP x Things.\n# TYPE x counter\nx 1\n");
    }

    #[test]
    fn a_clean_exposition_passes() {
        check_metrics("# HELP x_total Things.\n# TYPE x_total counter\nx_total 1\n");
    }
}
