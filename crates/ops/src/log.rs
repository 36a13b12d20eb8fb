//! The process log: `tracing` events written to stderr, as text lines for people or as
//! one JSON object a line for log shippers (`[log] format`), filtered by `[log] level`.
//!
//! What it does not: write files (the process log goes to stderr; a service manager or
//! a shell redirect decides where it lands), or filter per module (one level for the
//! whole process keeps the setting obvious).
//!
//! Roles log with `tracing`'s macros and carry their ids as fields
//! (`info!(session = %id, viewer = %addr, "…")`), so a JSON line keeps them as keys.

use std::io::IsTerminal;

use mediagate_config::{LogConfig, LogFormat, LogLevel};
use tracing::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The `tracing` threshold for a configured level.
pub(crate) fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// A subscriber for `config` that writes to `writer`; colours only when `ansi`.
pub(crate) fn subscriber<W>(
    config: &LogConfig,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_max_level(level_filter(config.level));
    match config.format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
    }
}

/// Installs the process-wide log on stderr. Call once, before any role starts; a
/// second call fails and changes nothing.
pub fn init(config: &LogConfig) -> Result<(), InitError> {
    let ansi = std::io::stderr().is_terminal();
    tracing::subscriber::set_global_default(subscriber(config, std::io::stderr, ansi))
        .map_err(|_| InitError)
}

/// The process log was already installed.
#[derive(Debug, thiserror::Error)]
#[error("the process log is already set up")]
pub struct InitError;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what a subscriber writes, line by line.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    fn capture(level: LogLevel, format: LogFormat, body: impl FnOnce()) -> Vec<String> {
        let out = Captured::default();
        let writer = out.clone();
        let config = LogConfig {
            level,
            format,
            ..LogConfig::default()
        };
        let subscriber = subscriber(&config, move || writer.clone(), false);
        tracing::subscriber::with_default(subscriber, body);
        out.lines()
    }

    #[test]
    fn the_level_drops_what_is_less_severe() {
        let lines = capture(LogLevel::Warn, LogFormat::Text, || {
            tracing::info!("not shown");
            tracing::warn!("shown");
            tracing::error!("shown too");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("WARN") && lines[0].ends_with("shown"),
            "{lines:?}"
        );
        assert!(lines[1].contains("ERROR"), "{lines:?}");
    }

    #[test]
    fn debug_and_trace_open_up_the_detail() {
        let lines = capture(LogLevel::Trace, LogFormat::Text, || {
            tracing::trace!("t");
            tracing::debug!("d");
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
    }

    #[test]
    fn json_lines_carry_fields_and_the_span_as_keys() {
        let lines = capture(LogLevel::Info, LogFormat::Json, || {
            let span = tracing::info_span!("viewer", session = "s1");
            let _entered = span.enter();
            tracing::info!(viewer = %"192.0.2.1:5000", bytes = 42u64, "session ended");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        for part in [
            r#""level":"INFO""#,
            r#""message":"session ended""#,
            r#""viewer":"192.0.2.1:5000""#,
            r#""bytes":42"#,
            r#""span":{"session":"s1","name":"viewer"}"#,
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
    }

    #[test]
    fn text_lines_show_fields_after_the_message() {
        let lines = capture(LogLevel::Info, LogFormat::Text, || {
            tracing::info!(call = "abc", "call ended");
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("INFO"), "{lines:?}");
        assert!(lines[0].contains("call ended call=\"abc\""), "{lines:?}");
        assert!(!lines[0].contains('\x1b'), "no colours when asked for none");
    }
}
