//! Error types of the SDP core.
//!
//! Three small enums, one per kind of failure: [`ParseError`] when a body is not an
//! acceptable SDP description (with the byte offset and line number of the problem),
//! [`ValueError`] when a typed view of one attribute value (`a=rtpmap:`, `a=range:` ...)
//! does not parse, and [`RewriteError`] when a rewriter is given a value that would
//! corrupt the description or has nothing to rewrite.

use thiserror::Error;

/// A body that could not be parsed as an SDP description (RFC 8866 §5).
///
/// `offset` is the byte offset into the body handed to the parser and `line` the
/// 1-based line number, so a log line points straight into a packet capture.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid SDP at line {line}, byte {offset}: {kind}")]
pub struct ParseError {
    /// Byte offset of the first offending byte, counted from the start of the body.
    pub offset: usize,
    /// 1-based line number that contains `offset`.
    pub line: usize,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

/// The reason a body was rejected; see [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The body is larger than [`crate::Limits::max_body_len`].
    #[error("the body is larger than the {limit}-byte limit for an SDP description")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The body has more lines than [`crate::Limits::max_lines`].
    #[error("the description has more than {limit} lines")]
    TooManyLines {
        /// The limit in force.
        limit: usize,
    },
    /// The body has more `m=` sections than [`crate::Limits::max_media`].
    #[error("the description has more than {limit} media sections (m= lines)")]
    TooManyMedia {
        /// The limit in force.
        limit: usize,
    },
    /// One line is longer than [`crate::Limits::max_line_len`].
    #[error("the line is longer than the {limit}-byte limit")]
    LineTooLong {
        /// The limit in force.
        limit: usize,
    },
    /// The body is empty (or only blank lines).
    #[error("the body is empty; an SDP description starts with `v=0`")]
    Empty,
    /// The first line is not a `v=` line.
    #[error("an SDP description must start with the line `v=0`")]
    MissingVersion,
    /// The `v=` line carries another version than 0.
    #[error("unsupported SDP version; only `v=0` is defined (RFC 8866 §5.1)")]
    UnsupportedVersion,
    /// A line does not have the form `<letter>=<value>`.
    #[error("the line does not have the form `<lowercase letter>=<value>`")]
    NotTypeValue,
    /// An empty line appears before the last non-empty line.
    #[error("blank line inside the description (only blank lines at the very end are tolerated)")]
    BlankLine,
    /// A NUL byte, which RFC 8866 §5 forbids anywhere in the description.
    #[error("NUL byte in the description")]
    NulByte,
    /// A carriage return that is not followed by a line feed.
    #[error("carriage return not followed by a line feed")]
    BareCarriageReturn,
    /// A structured line (`o=`, `c=`, `m=`) is not valid UTF-8.
    #[error("the {line_type}= line is not valid UTF-8")]
    NotUtf8 {
        /// The line type letter.
        line_type: char,
    },
    /// A structured line (`o=`, `c=`, `m=`) has a malformed field.
    #[error("malformed {line_type}= line: {reason}")]
    Malformed {
        /// The line type letter.
        line_type: char,
        /// What is wrong with the field at the error offset.
        reason: &'static str,
    },
}

/// A typed view of one line value or attribute value did not parse.
///
/// `offset` counts from the start of the value (the text after `a=name:` for an
/// attribute, after `x=` for a line), because values are parsed on demand, after any
/// rewrite may have moved them inside the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{reason} (at byte {offset} of the value)")]
pub struct ValueError {
    /// Byte offset inside the value.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl ValueError {
    pub(crate) fn new(offset: usize, reason: &'static str) -> Self {
        Self { offset, reason }
    }
}

/// A rewrite could not be applied; the description is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The description has no session-level `o=` line.
    #[error("the description has no o= line to rewrite")]
    NoOrigin,
    /// The session-level `o=` line is malformed (it was accepted by a parser that only
    /// validates it on access, or was never validated), so its fields cannot be located.
    #[error("the o= line is malformed and cannot be rewritten: {0}")]
    MalformedOrigin(ValueError),
    /// The existing `c=` line is malformed, so its fields cannot be located.
    #[error("the c= line is malformed and cannot be rewritten: {0}")]
    MalformedConnection(ValueError),
    /// `bump_version` was called on a sess-version of `u64::MAX`.
    #[error("sess-version {0} is already the largest 64-bit value and cannot be incremented")]
    VersionOverflow(u64),
    /// A value handed to a rewriter would break the line structure.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidValue {
        /// Which input was wrong (`"address"`, `"attribute name"` ...).
        field: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_message_names_line_offset_and_reason() {
        let e = ParseError {
            offset: 42,
            line: 3,
            kind: ParseErrorKind::Malformed {
                line_type: 'm',
                reason: "port must be a decimal number from 0 to 65535",
            },
        };
        assert_eq!(
            e.to_string(),
            "invalid SDP at line 3, byte 42: malformed m= line: port must be a decimal \
             number from 0 to 65535"
        );
    }

    #[test]
    fn value_and_rewrite_error_messages() {
        assert_eq!(
            ValueError::new(3, "clock rate must be a decimal number").to_string(),
            "clock rate must be a decimal number (at byte 3 of the value)"
        );
        let e = RewriteError::InvalidValue {
            field: "address",
            value: "1.2.3.4\r\n".into(),
            reason: "must not contain whitespace, `/` or control characters",
        };
        assert_eq!(
            e.to_string(),
            "invalid address \"1.2.3.4\\r\\n\": must not contain whitespace, `/` or control \
             characters"
        );
        assert_eq!(
            RewriteError::VersionOverflow(u64::MAX).to_string(),
            "sess-version 18446744073709551615 is already the largest 64-bit value and cannot \
             be incremented"
        );
    }
}
