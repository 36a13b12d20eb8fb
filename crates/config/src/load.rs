//! Loading a config file: TOML text in, a validated [`Config`] or every error found out.
//!
//! What it does: parses with the toml crate (TOML 1.0), maps each error's byte span to a
//! 1-based `line:column` (columns count characters), and keeps going after a bad value so
//! one run of `check-config` lists as many problems as it safely can. Cross-field
//! checks ([`validate`](super::validate)) run once every value parses, so they never
//! report consequences of an earlier error.
//!
//! How it keeps going: serde stops at the first error, so after one the offending lines
//! (the key's line, or a whole `[table]` when the error is in its header) are blanked
//! out byte for byte (offsets stay valid) and parsing starts again. It stops at a syntax
//! error, when blanking would break the syntax, when an error repeats, or after
//! [`MAX_REPORTED_ERRORS`].
//!
//! What it does not: include other files, expand environment variables, or merge
//! several files.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use super::validate::validate;
use super::Config;

/// Largest config file accepted, in bytes; a config is a few kilobytes, so anything
/// bigger is a mistake (or an attack on a parser that holds it in memory).
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Most errors listed for one file.
pub(crate) const MAX_REPORTED_ERRORS: usize = 50;

/// One problem in a config, with the byte span it concerns when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    span: Option<Range<usize>>,
    message: String,
}

impl ConfigError {
    /// A problem at `span` (a byte range of the file; `None` when there is no place to
    /// point at, as for command-line settings).
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        // One error per output line, whatever the underlying message looks like.
        let message = message.into().trim().replace('\n', "; ");
        Self { span, message }
    }

    /// Byte range of the file this error is about.
    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }

    /// What is wrong, as a sentence for the user.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A 1-based line and column (in characters) in a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// Line number, from 1.
    pub line: usize,
    /// Column number in characters, from 1.
    pub column: usize,
}

/// The position of byte `offset` in `text`. An offset past the end means the end; one
/// inside a multi-byte character means that character.
pub(crate) fn position_at(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before.get(line_start..).unwrap_or("").chars().count() + 1,
    }
}

/// Renders errors as `FILE:LINE:COL: message` lines (`FILE: message` when an error has
/// no position), the format editors and CI annotations understand.
pub fn render_errors(file: &str, text: &str, errors: &[ConfigError]) -> String {
    let mut out = String::new();
    for error in errors {
        match error.span() {
            Some(span) => {
                let p = position_at(text, span.start);
                out.push_str(&format!(
                    "{file}:{}:{}: {}\n",
                    p.line,
                    p.column,
                    error.message()
                ));
            }
            None => out.push_str(&format!("{file}: {}\n", error.message())),
        }
    }
    out
}

/// Parses and validates config text. On failure, every error found, in file order.
pub fn parse_config(text: &str) -> Result<Config, Vec<ConfigError>> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(vec![ConfigError::new(
            Some(0..0),
            format!(
                "the file is {} bytes; a config may be at most {MAX_CONFIG_BYTES}",
                text.len()
            ),
        )]);
    }
    if let Err(syntax) = text.parse::<toml::Table>() {
        // A syntax error can shift the meaning of everything after it; report only it.
        return Err(vec![from_toml(&syntax)]);
    }
    let mut errors = Vec::new();
    let mut work = text.to_owned();
    loop {
        match toml::from_str::<Config>(&work) {
            Ok(config) if errors.is_empty() => {
                let problems = validate(&config);
                return if problems.is_empty() {
                    Ok(config)
                } else {
                    Err(problems)
                };
            }
            Ok(_) => break,
            Err(e) => {
                let error = from_toml(&e);
                if errors.contains(&error) {
                    break;
                }
                errors.push(error);
                if errors.len() >= MAX_REPORTED_ERRORS {
                    errors.push(ConfigError::new(
                        None,
                        format!(
                            "stopped after {MAX_REPORTED_ERRORS} errors; fix these and check again"
                        ),
                    ));
                    break;
                }
                let Some(span) = e.span() else { break };
                if !blank_out(&mut work, span) || work.parse::<toml::Table>().is_err() {
                    break;
                }
            }
        }
    }
    errors.sort_by_key(|e| e.span().map_or(usize::MAX, |s| s.start));
    Err(errors)
}

fn from_toml(e: &toml::de::Error) -> ConfigError {
    let message = e.message();
    if let Some(near) = suggestion(message) {
        return ConfigError::new(e.span(), format!("{message}; did you mean `{near}`?"));
    }
    if message.ends_with("expected a sequence") {
        return ConfigError::new(
            e.span(),
            format!("{message}: write a list such as [\"a\", \"b\"], or repeat a [[table]] header for a list of tables"),
        );
    }
    ConfigError::new(e.span(), message)
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (and "unknown variant"),
/// the expected name closest to the typo, when it is close enough to be a typo.
fn suggestion(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (typo, expected) = rest.split_once('`')?;
    if typo.len() > 64 {
        return None;
    }
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|candidate| (edit_distance(typo, candidate), candidate))
        .filter(|&(distance, candidate)| distance <= 2 && distance < candidate.len())
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over bytes (config keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous
                .get(j)
                .map_or(usize::MAX, |&d| d + usize::from(ca != cb));
            let delete = previous.get(j + 1).map_or(usize::MAX, |&d| d + 1);
            let insert = current.get(j).map_or(usize::MAX, |&d| d + 1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}

/// Replaces with spaces the lines that hold `span` (through the end of the table when
/// the span starts in a `[table]` header), keeping every byte offset. False when there
/// was nothing left to blank.
fn blank_out(text: &mut String, span: Range<usize>) -> bool {
    let start = span.start.min(text.len());
    let end = span.end.clamp(start, text.len());
    let mut first_line = line_start(text, start);
    let mut header = is_header(text, first_line);
    if !header {
        // Inside an array-of-tables element, dropping one key would only trade this
        // error for "missing field"; drop the whole element instead.
        let mut line = first_line;
        while line > 0 && !is_header(text, line) {
            line = line_start(text, line - 1);
        }
        if is_header(text, line)
            && text
                .get(line..)
                .is_some_and(|l| l.trim_start().starts_with("[["))
        {
            first_line = line;
            header = true;
        }
    }
    let mut last_end = line_end(text, end.max(start));
    if header {
        // The table's keys would otherwise fall into the previous table.
        while last_end < text.len() {
            let next_start = last_end + 1;
            if is_header(text, next_start) {
                break;
            }
            last_end = line_end(text, next_start);
        }
    }
    let Some(region) = text.get(first_line..last_end) else {
        return false;
    };
    if region.bytes().all(|b| b == b' ') {
        return false;
    }
    let blanked: String = region
        .bytes()
        .map(|b| if b == b'\r' { '\r' } else { ' ' })
        .collect();
    text.replace_range(first_line..last_end, &blanked);
    true
}

/// Byte offset of the start of the line that holds `offset`.
fn line_start(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .and_then(|b| b.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// True when the line starting at `offset` is a `[table]` or `[[array]]` header.
fn is_header(text: &str, offset: usize) -> bool {
    text.get(offset..)
        .is_some_and(|l| l.trim_start().starts_with('['))
}

/// Byte offset of the `\n` ending the line that holds `offset` (or the text's end).
fn line_end(text: &str, offset: usize) -> usize {
    text.get(offset..)
        .and_then(|rest| rest.find('\n'))
        .map_or(text.len(), |i| offset + i)
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
    /// The file is not valid UTF-8 or bigger than [`MAX_CONFIG_BYTES`].
    #[error("{0}")]
    Unusable(String),
    /// The file was read but has errors; `text` is kept to render positions.
    #[error("{} error(s) in the config", errors.len())]
    Invalid {
        /// The file's text.
        text: String,
        /// Every error found.
        errors: Vec<ConfigError>,
    },
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let metadata = std::fs::metadata(path)?;
    if metadata.len() > MAX_CONFIG_BYTES as u64 {
        return Err(LoadError::Unusable(format!(
            "the file is {} bytes; a config may be at most {MAX_CONFIG_BYTES}",
            metadata.len()
        )));
    }
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        LoadError::Unusable(format!(
            "the file is not UTF-8 text (bad byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse_config(&text).map_err(|errors| LoadError::Invalid { text, errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, errors: &[ConfigError]) -> Vec<String> {
        render_errors("f.toml", text, errors)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(position_at(text, 0), Position { line: 1, column: 1 });
        assert_eq!(position_at(text, 2), Position { line: 1, column: 3 });
        assert_eq!(position_at(text, 3), Position { line: 2, column: 1 });
        assert_eq!(position_at(text, 7), Position { line: 2, column: 4 });
        assert_eq!(
            position_at(text, 6),
            Position { line: 2, column: 3 },
            "inside 'é'"
        );
        assert_eq!(position_at(text, 8), Position { line: 3, column: 1 });
        assert_eq!(position_at(text, 999), Position { line: 3, column: 2 });
        assert_eq!(position_at("", 0), Position { line: 1, column: 1 });
    }

    #[test]
    fn unknown_key_position() {
        let text = "state_dir = \"/tmp/x\"\n\n[edge]\nlingr = \"5s\"\n";
        let errors = parse_config(text).unwrap_err();
        let lines = at(text, &errors);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("f.toml:4:1: unknown field `lingr`, expected one of"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_notify_url_the_relay_cannot_use_is_refused_where_it_is_written() {
        // The relay speaks plain HTTP without credentials; these used to pass the check
        // and then stop the relay at start.
        let text = "[relay]\nteardown_notify_url = \"https://127.0.0.1:5060/RPC\"\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(
            at(text, &errors),
            ["f.toml:2:23: invalid HTTP URL \"https://127.0.0.1:5060/RPC\": https:// (HTTP over TLS) is not supported yet; use http://, as in http://127.0.0.1:5060/RPC"]
        );
        let text = "[relay]\nteardown_notify_url = \"http://u:p@127.0.0.1:5060/RPC\"\n";
        let errors = parse_config(text).unwrap_err();
        let lines = at(text, &errors);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("f.toml:2:23: invalid HTTP URL")
                && lines[0].contains("user names and passwords are not supported"),
            "{lines:?}"
        );
        let ok = "[relay]\nteardown_notify_url = \"http://127.0.0.1:5060/RPC\"\n";
        assert!(parse_config(ok).is_ok());
    }

    #[test]
    fn suggests_the_nearest_key_for_a_typo() {
        let text = "[edge]\nlingr = \"5s\"\n[log]\nformat = \"jsn\"\n[relay]\nzzz = 1\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 3);
        assert!(
            errors[0].message().ends_with("; did you mean `linger`?"),
            "{}",
            errors[0]
        );
        assert_eq!(
            errors[1].message(),
            "unknown variant `jsn`, expected `text` or `json`; did you mean `json`?"
        );
        assert!(
            !errors[2].message().contains("did you mean"),
            "{}",
            errors[2]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
        assert_eq!(edit_distance("ab", ""), 2);
    }

    /// Keys whose feature is not built yet are refused, not parsed and ignored: the
    /// process log has no file of its own (stderr), and the admin API has no CRL
    /// checking yet.
    #[test]
    fn refuses_keys_of_features_not_built_yet() {
        let text = "[log]\nfile = \"/tmp/a.log\"\n[admin]\nlisten = [\"127.0.0.1:9554\"]\nclient_crl = \"/ca.crl\"\n";
        let errors = parse_config(text).unwrap_err();
        let lines = at(text, &errors);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("f.toml:2:1: unknown field `file`"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("f.toml:5:1: unknown field `client_crl`"),
            "{lines:?}"
        );
    }

    #[test]
    fn reads_the_access_log_and_refuses_an_unknown_format() {
        let config =
            parse_config("[log]\naccess_log = \"/tmp/a.log\"\naccess_log_format = \"json\"\n")
                .unwrap();
        assert_eq!(
            config.log.access_log.map(|p| p.get().clone()),
            Some(std::path::PathBuf::from("/tmp/a.log"))
        );
        assert_eq!(config.log.access_log_format, crate::AccessLogFormat::Json);
        let text = "[log]\naccess_log_format = \"squid\"\n";
        let errors = parse_config(text).unwrap_err();
        let lines = at(text, &errors);
        assert!(
            lines[0].starts_with("f.toml:2:21: unknown variant `squid`"),
            "{lines:?}"
        );
    }

    #[test]
    fn explains_lists() {
        let errors = parse_config("[edge]\nlisten = \"0.0.0.0:1\"\n").unwrap_err();
        assert_eq!(
            errors[0].message(),
            "invalid type: string \"0.0.0.0:1\", expected a sequence: write a list such as [\"a\", \"b\"], or repeat a [[table]] header for a list of tables"
        );
    }

    #[test]
    fn reports_several_value_errors_in_file_order() {
        let text = r#"
[log]
format = "xml"

[edge]
linger = "ten"
udp_ports = "40000-30000"
bogus = 1

[edge.client_acl]
deny = ["10.0.0.1/8"]
"#;
        let errors = parse_config(text).unwrap_err();
        let lines = at(text, &errors);
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(
            lines[0].starts_with("f.toml:3:10: unknown variant `xml`"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("f.toml:6:10: invalid duration \"ten\""),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("f.toml:7:13: invalid port range 40000-30000"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].starts_with("f.toml:8:1: unknown field `bogus`"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("f.toml:11:9: invalid network 10.0.0.1/8"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn unknown_table_does_not_spill_into_the_previous_one() {
        let text = "[edge]\nlinger = \"1s\"\n[bogus]\nx = 1\ny = 2\n[log]\nlevel = \"loud\"\n";
        let lines = at(text, &parse_config(text).unwrap_err());
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("f.toml:3:2: unknown field `bogus`"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("f.toml:7:9: unknown variant `loud`"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn syntax_errors_stop_at_the_first() {
        let text = "[edge]\nlinger = \"1s\nlisten = [\n";
        let errors = parse_config(text).unwrap_err();
        assert_eq!(errors.len(), 1);
        let lines = at(text, &errors);
        assert!(lines[0].starts_with("f.toml:2:"), "{lines:?}");
        assert!(!lines[0].contains('\n'));
    }

    #[test]
    fn errors_in_array_of_tables() {
        let text = "[[edge.route]]\nadvertised = \"cam1\"\norigin = \"rtsp://h/\"\n\n[[edge.route]]\nadvertised = \"/b\"\norigin = \"http://h/\"\n";
        let lines = at(text, &parse_config(text).unwrap_err());
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("f.toml:2:14: invalid advertised prefix \"cam1\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].starts_with("f.toml:7:10: invalid RTSP URL \"http://h/\""),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn missing_required_route_field() {
        let text = "[[edge.route]]\nadvertised = \"/cam1\"\n";
        let lines = at(text, &parse_config(text).unwrap_err());
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("missing field `origin`"), "{}", lines[0]);
        assert!(lines[0].starts_with("f.toml:1:"), "{}", lines[0]);
    }

    #[test]
    fn errors_without_a_span_render_without_a_position() {
        let errors = [ConfigError::new(None, "no role\nis enabled")];
        assert_eq!(
            render_errors("x.toml", "", &errors),
            "x.toml: no role; is enabled\n"
        );
    }

    #[test]
    fn stops_after_the_error_cap() {
        let text: String = (0..200).map(|i| format!("x{i} = 1\n")).collect();
        let errors = parse_config(&text).unwrap_err();
        assert_eq!(errors.len(), MAX_REPORTED_ERRORS + 1);
        assert!(errors[49].message().starts_with("unknown field `x49`"));
        assert_eq!(errors[50].span(), None);
        assert_eq!(
            errors[50].message(),
            "stopped after 50 errors; fix these and check again"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = format!("a = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let errors = parse_config(&text).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].message(), "recursion limit exceeded");
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        assert_eq!(parse_config(""), Ok(Config::default()));
    }

    #[test]
    fn oversized_text_is_refused() {
        let text = "#".repeat(MAX_CONFIG_BYTES + 1);
        let errors = parse_config(&text).unwrap_err();
        assert!(errors[0].message().contains("at most 1048576"));
    }

    #[test]
    fn every_prefix_of_a_valid_file_parses_or_errors_without_panicking() {
        let check = |prefix: &str| {
            if let Err(errors) = parse_config(prefix) {
                assert!(!errors.is_empty());
                let rendered = render_errors("p", prefix, &errors);
                assert_eq!(rendered.lines().count(), errors.len());
                for e in &errors {
                    assert!(e.span().is_some_and(|s| s.start <= prefix.len()), "{e:?}");
                }
            }
        };
        // Every byte of a small file with most value types in it ...
        let small = "[edge]\nlinger = \"1m30s\"\nudp_ports = \"20000-20999\"\n\
            [edge.client_acl]\ndeny = [\"10.0.0.0/8\", \"::1\"]\n\
            [[edge.route]]\nadvertised = \"/cam1\"\norigin = \"rtsp://u:p@[2001:db8::1]:554/a\"\n\
            credentials = { username = \"é\", password = \"p\" }\n";
        assert!(parse_config(small).is_err(), "credentials twice");
        for end in (0..=small.len()).filter(|&i| small.is_char_boundary(i)) {
            check(&small[..end]);
        }
        // ... and every line of the example (every byte takes seconds there).
        let example = include_str!("../../../config/mediagate.example.toml");
        for (end, _) in example.match_indices('\n') {
            check(&example[..end]);
            check(&example[..end + 1]);
        }
    }

    #[test]
    fn blanking_keeps_offsets() {
        let mut text = "a = 1\nb = \"é\"\nc = 3\n".to_owned();
        let len = text.len();
        assert!(blank_out(&mut text, 10..11));
        assert_eq!(text.len(), len);
        assert_eq!(text, "a = 1\n        \nc = 3\n");
        assert!(!blank_out(&mut text, 10..11), "already blank");
    }
}
