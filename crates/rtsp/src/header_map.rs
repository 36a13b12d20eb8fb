//! An ordered, case-insensitive header list that keeps each header's original
//! spelling and order, so a message re-serialises byte-for-byte as far as RTSP allows
//! (RFC 2326 §4.2: names are case-insensitive; we must not reorder because proxies are
//! expected to pass unknown headers through untouched).
//!
//! Typed access goes through [`TypedHeader`], implemented by each type in
//! [`crate::headers`].

use std::fmt;

/// Error from parsing one header value into its typed form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {header} header at byte {offset} of its value: {reason}")]
pub struct HeaderError {
    /// Canonical header name, e.g. `Transport`.
    pub header: &'static str,
    /// Byte offset into the header *value* where the problem was found.
    pub offset: usize,
    /// What was wrong, in words a user can act on.
    pub reason: String,
}

impl HeaderError {
    pub fn new(header: &'static str, offset: usize, reason: impl Into<String>) -> Self {
        Self {
            header,
            offset,
            reason: reason.into(),
        }
    }
}

/// A header whose value has a typed representation.
///
/// `parse_value(h.to_value())` must give back an equal value (tested per type).
pub trait TypedHeader: Sized {
    /// Canonical spelling of the header name, e.g. `"CSeq"`.
    const NAME: &'static str;
    /// Parses one header *value* (the text after `Name:` with surrounding whitespace
    /// removed). Headers that may repeat are combined by [`Headers::typed`] with `,`.
    fn parse_value(value: &str) -> Result<Self, HeaderError>;
    /// Serialises the value (without the name).
    fn to_value(&self) -> String;
}

/// One header line as received: original name spelling and raw value (trimmed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// Ordered header list with case-insensitive lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<Header>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.entries.iter()
    }

    /// First value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// All values of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a header, keeping any existing ones of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push(Header {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Replaces every header of this name by one, at the position of the first
    /// (or at the end when absent).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .entries
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.entries[i].value = value;
                let mut seen = 0usize;
                self.entries.retain(|h| {
                    if h.name.eq_ignore_ascii_case(name) {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.append(name, value),
        }
    }

    /// Removes every header of this name; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        let before = self.entries.len();
        self.entries.retain(|h| !h.name.eq_ignore_ascii_case(name));
        before - self.entries.len()
    }

    /// Typed view of a header: `None` when absent, `Some(Err)` when present but
    /// malformed. Repeated headers are joined with `", "` (RFC 2326 §4.2 list rule).
    pub fn typed<H: TypedHeader>(&self) -> Option<Result<H, HeaderError>> {
        let mut values = self.get_all(H::NAME).peekable();
        let first = values.next()?;
        if values.peek().is_none() {
            return Some(H::parse_value(first));
        }
        let mut joined = first.to_owned();
        for v in values {
            joined.push_str(", ");
            joined.push_str(v);
        }
        Some(H::parse_value(&joined))
    }

    /// Sets a typed header (replacing any of the same name).
    pub fn set_typed<H: TypedHeader>(&mut self, h: &H) {
        self.set(H::NAME, h.to_value());
    }
}

impl fmt::Display for Headers {
    /// Serialises as `Name: value\r\n` lines (no terminating blank line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for h in &self.entries {
            write!(f, "{}: {}\r\n", h.name, h.value)?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_order_is_kept() {
        let mut h = Headers::new();
        h.append("CSeq", "1");
        h.append("x-Custom", "a");
        h.append("X-CUSTOM", "b");
        assert_eq!(h.get("cseq"), Some("1"));
        assert_eq!(h.get_all("x-custom").collect::<Vec<_>>(), ["a", "b"]);
        h.set("X-Custom", "c");
        assert_eq!(h.to_string(), "CSeq: 1\r\nx-Custom: c\r\n");
        assert_eq!(h.remove("cseq"), 1);
        assert_eq!(h.len(), 1);
    }
}
