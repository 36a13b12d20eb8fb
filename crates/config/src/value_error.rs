//! The one error type of the config value parsers.
//!
//! What it does: carries a complete, user-facing sentence saying what was wrong with a
//! value and what a right one looks like. What it does not: know where the value was;
//! the toml deserializer (or the CLI parser) adds the position.

/// A config value that does not parse or is out of range; the message quotes the value
/// and shows the expected form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidValue {
    message: String,
}

impl InvalidValue {
    /// An error with this message (a full sentence, no trailing period needed).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Longest string any config value parser looks at; longer input is refused before
/// any work so a hostile file cannot make a parser loop over megabytes.
pub(crate) const MAX_VALUE_LEN: usize = 2048;

/// Refuses over-long values with a message naming what was expected.
pub(crate) fn check_len(s: &str, what: &str) -> Result<(), InvalidValue> {
    if s.len() > MAX_VALUE_LEN {
        return Err(InvalidValue::new(format!(
            "{what} is {} bytes long; the limit is {MAX_VALUE_LEN}",
            s.len()
        )));
    }
    Ok(())
}

/// Shortens a value for quoting inside an error message.
pub(crate) fn quoted(s: &str) -> String {
    const SHOWN: usize = 60;
    if s.chars().count() <= SHOWN {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(SHOWN).collect();
        format!("{head:?}...")
    }
}
