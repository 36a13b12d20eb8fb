//! `Located<T>`: a config value that remembers where in the file it was written.
//!
//! What it does: keeps the byte span the toml deserializer reports, so checks that
//! look at several fields at once (min below max, a role enabled without addresses) can
//! still point at a line and column. What it does not: take part in equality; two
//! configs with the same values are equal wherever the values were written.

use std::ops::{Deref, Range};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value plus the byte span of its text in the config file; `None` when the value
/// came from a default or from the command line.
#[derive(Clone, Debug, Default)]
pub struct Located<T> {
    value: T,
    span: Option<Range<usize>>,
}

impl<T> Located<T> {
    /// A value with no position (a default or a command-line value).
    pub const fn new(value: T) -> Self {
        Self { value, span: None }
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// Mutable access to the value (keeps the span).
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// The value, dropping the span.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Byte range of the value's text in the file, if it came from one.
    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }
}

impl<T> From<T> for Located<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T> Deref for Located<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Located<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Located<T> {}

impl<T: Serialize> Serialize for Located<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only the toml deserializer knows spans; it recognises this wrapper by name.
        let spanned = toml::Spanned::<T>::deserialize(deserializer)?;
        let span = spanned.span();
        Ok(Self {
            value: spanned.into_inner(),
            span: Some(span),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        a: Located<u32>,
    }

    #[test]
    fn keeps_the_value_span_and_ignores_it_in_equality() {
        let doc: Doc = toml::from_str("a = 42\n").unwrap();
        assert_eq!(*doc.a, 42);
        assert_eq!(doc.a.span(), Some(4..6));
        assert_eq!(doc.a, Located::new(42));
        assert_eq!(Located::new(1).span(), None);
    }

    #[test]
    fn serializes_as_the_bare_value() {
        #[derive(Serialize)]
        struct Out {
            b: Located<&'static str>,
        }
        let text = toml::to_string(&Out {
            b: Located::new("x"),
        })
        .unwrap();
        assert_eq!(text, "b = \"x\"\n");
    }
}
