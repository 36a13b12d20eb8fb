//! A `name[=value]` parameter that a header's grammar does not define, kept verbatim so
//! that a proxy re-serialises what it did not understand (RFC 2326 §12.39 / RFC 7826
//! §18.54 `trn-param-ext`, §18.49 `generic-param`, §20.2.3 `cache-extension`).
//!
//! What it does not: interpret the value. The value is stored exactly as received,
//! including the quotes of a quoted string; [`ExtensionParam::unquoted_value`] decodes it.

use super::syntax::{self, Span};
use crate::header_map::HeaderError;

/// An unrecognised parameter, name and optional raw value, in the order received.
///
/// Invariant for round trips: `name` is a token and `value`, when present, contains no
/// unquoted `;` or `,` and no control characters (always true for parsed values).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExtensionParam {
    /// Parameter name as spelled by the peer.
    pub name: String,
    /// Raw value text (quotes kept), `None` for a bare flag.
    pub value: Option<String>,
}

impl ExtensionParam {
    /// A parameter with a value.
    pub fn new(name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        Self {
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    /// Value with a surrounding quoted string decoded; raw text otherwise.
    pub fn unquoted_value(&self) -> Option<String> {
        let value = self.value.as_deref()?;
        if value.starts_with('"') {
            syntax::unquote("", Span::new(value, 0)).ok()
        } else {
            Some(value.to_owned())
        }
    }

    /// Parses one `name[=value]` item whose name has already been found unknown.
    pub(crate) fn parse(header: &'static str, span: Span<'_>) -> Result<Self, HeaderError> {
        let (name, value) = syntax::split_param(span);
        let name = syntax::expect_token(header, name, "parameter name")?;
        if let Some(v) = value {
            if v.text.starts_with('"') {
                // Validates the quoting so that re-serialisation stays well formed.
                syntax::unquote(header, v)?;
            } else if let Some(at) = v.first_bad(|b| b != b'"' && !syntax::is_lws(b)) {
                return Err(syntax::err(
                    header,
                    at,
                    format!("invalid character in the value of parameter {name}"),
                ));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.map(|v| v.text.to_owned()),
        })
    }

    /// Appends `;name[=value]` to `out`.
    pub(crate) fn write_to(&self, out: &mut String) {
        out.push(';');
        self.write_bare(out);
    }

    /// Appends `name[=value]` to `out`.
    pub(crate) fn write_bare(&self, out: &mut String) {
        out.push_str(&self.name);
        if let Some(v) = &self.value {
            out.push('=');
            out.push_str(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flag_token_and_quoted_values() {
        let p = ExtensionParam::parse("T", Span::new("x-foo = \"a b\"", 0)).unwrap();
        assert_eq!(p, ExtensionParam::new("x-foo", Some("\"a b\"")));
        assert_eq!(p.unquoted_value().as_deref(), Some("a b"));
        let p = ExtensionParam::parse("T", Span::new("flag", 0)).unwrap();
        assert_eq!(p, ExtensionParam::new("flag", None::<String>));
        let e = ExtensionParam::parse("T", Span::new("a b=1", 5)).unwrap_err();
        assert_eq!(e.offset, 6);
        let e = ExtensionParam::parse("T", Span::new("a=x y", 0)).unwrap_err();
        assert_eq!(e.offset, 3);
    }
}
