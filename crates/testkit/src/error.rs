//! The one error type of the test harness.
//!
//! Every message names what was being done and, where a child program was involved, ends
//! with that program's last output lines, so a failed test says why without a rerun.
//! A missing program names the Debian package that provides it: the harness never skips.

use std::fmt;
use std::time::Duration;

/// What went wrong while starting, driving or reading a third-party peer.
#[derive(Debug)]
pub enum Error {
    /// A program the harness needs is not installed.
    MissingProgram {
        /// The program looked for (e.g. `ffprobe`).
        program: String,
        /// The Debian package(s) that provide it.
        package: &'static str,
    },
    /// The program exists but could not be started.
    Spawn {
        /// The program that failed to start.
        program: String,
        /// Why the OS refused.
        source: std::io::Error,
    },
    /// A bounded wait ran out.
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long the harness waited.
        after: Duration,
        /// The peer's last output lines.
        diagnostics: String,
    },
    /// A peer exited (or reported an error) before it did what was asked.
    PeerFailed {
        /// What the peer was asked to do.
        what: String,
        /// Exit status or the peer's own error report.
        detail: String,
        /// The peer's last output lines.
        diagnostics: String,
    },
    /// A peer printed something the harness could not understand.
    BadOutput {
        /// Which output.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A socket or file operation of the harness itself failed.
    Io {
        /// What the harness was doing.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::MissingProgram { program, package } => write!(
                f,
                "`{program}` is not installed; install the Debian package(s) `{package}` \
                 (apt-get install {package})"
            ),
            Error::Spawn { program, source } => write!(f, "cannot start `{program}`: {source}"),
            Error::Timeout {
                what,
                after,
                diagnostics,
            } => write!(
                f,
                "timed out after {:.1} s waiting for {what}{}",
                after.as_secs_f64(),
                section(diagnostics)
            ),
            Error::PeerFailed {
                what,
                detail,
                diagnostics,
            } => write!(f, "{what} failed: {detail}{}", section(diagnostics)),
            Error::BadOutput { what, detail } => {
                write!(f, "cannot understand the output of {what}: {detail}")
            }
            Error::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

fn section(diagnostics: &str) -> String {
    if diagnostics.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last output ---\n{}", diagnostics.trim_end())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Spawn { source, .. } | Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result of harness operations.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_the_package() {
        let e = Error::MissingProgram {
            program: "ffprobe".into(),
            package: "ffmpeg",
        };
        assert_eq!(
            e.to_string(),
            "`ffprobe` is not installed; install the Debian package(s) `ffmpeg` \
             (apt-get install ffmpeg)"
        );
    }

    #[test]
    fn timeout_appends_diagnostics_only_when_present() {
        let e = Error::Timeout {
            what: "origin ready".into(),
            after: Duration::from_millis(1500),
            diagnostics: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "timed out after 1.5 s waiting for origin ready"
        );
        let e = Error::PeerFailed {
            what: "ffprobe".into(),
            detail: "exit status 1".into(),
            diagnostics: "stderr: 401 Unauthorized\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "ffprobe failed: exit status 1\n--- last output ---\nstderr: 401 Unauthorized"
        );
    }
}
