//! A "passport": which certificate subjects a TLS peer may present on the dispatcher
//! link, as MediaProxy's `passport` setting. `"O=Example, CN=relay*"` admits a peer
//! whose subject has an organisation `Example` and a common name starting with
//! `relay`.
//!
//! What it does: parses a comma-separated list of `FIELD=PATTERN` (fields `O`, `OU`,
//! `CN`, `C`, `L`, `ST`, `EMAIL`, case-insensitive names), where a pattern is compared
//! exactly, or as a prefix (`relay*`), a suffix (`*.example.net`), a substring
//! (`*edge*`) or anything present (`*`); and tells whether a subject, given as
//! (field, value) pairs, matches every item. A field the subject lacks never matches;
//! when the subject has the field several times, one match is enough. Values compare
//! case-sensitively, as certificates spell them.
//!
//! What it does not: read certificates (the link does, and hands the subject here),
//! `*` in the middle of a value, or escaping `,` and `=` inside values.

use std::fmt;
use std::str::FromStr;

use super::value_error::{check_len, quoted, InvalidValue};

/// A subject field a passport can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubjectField {
    /// `O`, organisation.
    Organization,
    /// `OU`, organisational unit.
    OrganizationalUnit,
    /// `CN`, common name.
    CommonName,
    /// `C`, country.
    Country,
    /// `L`, locality.
    Locality,
    /// `ST`, state or province.
    State,
    /// `EMAIL`, the subject's e-mail address attribute.
    Email,
}

impl SubjectField {
    /// The field's short name as passports write it.
    pub fn short(self) -> &'static str {
        match self {
            Self::Organization => "O",
            Self::OrganizationalUnit => "OU",
            Self::CommonName => "CN",
            Self::Country => "C",
            Self::Locality => "L",
            Self::State => "ST",
            Self::Email => "EMAIL",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "O" => Self::Organization,
            "OU" => Self::OrganizationalUnit,
            "CN" => Self::CommonName,
            "C" => Self::Country,
            "L" => Self::Locality,
            "ST" => Self::State,
            "EMAIL" | "EMAILADDRESS" => Self::Email,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Item {
    field: SubjectField,
    /// The pattern as written, `*` included.
    pattern: String,
}

impl Item {
    fn matches(&self, value: &str) -> bool {
        let p = self.pattern.as_str();
        match (p.strip_prefix('*'), p.strip_suffix('*')) {
            _ if p == "*" => true,
            (Some(rest), _) if rest.ends_with('*') => value.contains(&rest[..rest.len() - 1]),
            (Some(suffix), _) => value.ends_with(suffix),
            (None, Some(prefix)) => value.starts_with(prefix),
            (None, None) => value == p,
        }
    }
}

/// Subject patterns a peer's certificate must match (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Passport {
    items: Vec<Item>,
}

const FORM: &str = "write FIELD=VALUE items separated by commas, FIELD one of O, OU, CN, C, L, ST, EMAIL and VALUE with an optional * at its start or end, for example \"O=Example, CN=relay*\"";

impl Passport {
    /// Whether `subject` (each attribute of a certificate's subject as (field,
    /// value)) matches every item. The first item that fails is returned as text
    /// for the log.
    pub fn check<'a>(
        &self,
        subject: impl Iterator<Item = (SubjectField, &'a str)> + Clone,
    ) -> Result<(), String> {
        for item in &self.items {
            let found = subject
                .clone()
                .any(|(field, value)| field == item.field && item.matches(value));
            if !found {
                return Err(format!("{}={}", item.field.short(), item.pattern));
            }
        }
        Ok(())
    }
}

impl FromStr for Passport {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        check_len(s, "a passport")?;
        let mut items = Vec::new();
        for part in s.split(',') {
            let part = part.trim();
            let Some((name, pattern)) = part.split_once('=') else {
                return Err(InvalidValue::new(format!(
                    "invalid passport item {}: no `=`; {FORM}",
                    quoted(part)
                )));
            };
            let Some(field) = SubjectField::parse(name.trim()) else {
                return Err(InvalidValue::new(format!(
                    "invalid passport field {}; {FORM}",
                    quoted(name.trim())
                )));
            };
            let pattern = pattern.trim();
            let inner = pattern.trim_start_matches('*').trim_end_matches('*');
            if pattern.is_empty() || inner.contains('*') || pattern.starts_with("**") {
                return Err(InvalidValue::new(format!(
                    "invalid passport value {} for {}: empty, or `*` not only at the start or end; {FORM}",
                    quoted(pattern),
                    field.short()
                )));
            }
            items.push(Item {
                field,
                pattern: pattern.to_owned(),
            });
        }
        Ok(Self { items })
    }
}

impl fmt::Display for Passport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", item.field.short(), item.pattern)?;
        }
        Ok(())
    }
}

string_value_serde!(Passport, "a passport such as \"O=Example, CN=relay*\"");

#[cfg(test)]
mod tests {
    use super::*;
    use SubjectField::*;

    fn check(passport: &str, subject: &[(SubjectField, &str)]) -> Result<(), String> {
        passport
            .parse::<Passport>()
            .unwrap()
            .check(subject.iter().map(|(f, v)| (*f, *v)))
    }

    #[test]
    fn wildcards_at_either_end_and_exact_values() {
        let s = [
            (Organization, "Example Ltd"),
            (CommonName, "relay7.example.net"),
        ];
        assert!(check("O=Example Ltd, CN=relay*", &s).is_ok());
        assert!(check("cn=*.example.net", &s).is_ok());
        assert!(check("CN=*7.exa*", &s).is_ok());
        assert!(check("CN=*", &s).is_ok());
        assert_eq!(check("O=Example", &s), Err("O=Example".to_owned()));
        assert_eq!(
            check("CN=dispatcher*", &s),
            Err("CN=dispatcher*".to_owned())
        );
        assert_eq!(check("OU=*", &s), Err("OU=*".to_owned()));
        assert_eq!(check("O=example ltd", &s), Err("O=example ltd".to_owned()));
    }

    #[test]
    fn one_of_several_values_is_enough() {
        let s = [(OrganizationalUnit, "media"), (OrganizationalUnit, "voice")];
        assert!(check("OU=voice", &s).is_ok());
    }

    #[test]
    fn bad_passports_say_what_to_write() {
        for bad in ["O", "X=1", "CN=re*lay", "CN=", "CN=**", ""] {
            let err = bad.parse::<Passport>().unwrap_err().to_string();
            assert!(err.contains("FIELD=VALUE"), "{bad}: {err}");
        }
    }

    #[test]
    fn prints_as_it_parses() {
        let p: Passport = "o=Example,  CN=relay*".parse().unwrap();
        assert_eq!(p.to_string(), "O=Example, CN=relay*");
        assert_eq!(p.to_string().parse::<Passport>().unwrap(), p);
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_and_what_parses_prints_back(text in "[ -~]{0,60}") {
            if let Ok(p) = text.parse::<Passport>() {
                proptest::prop_assert_eq!(p.to_string().parse::<Passport>().unwrap(), p);
            }
        }

        #[test]
        fn checking_any_subject_never_panics(pattern in "[A-Za-z*]{1,8}", value in "[A-Za-z]{0,8}") {
            if let Ok(p) = format!("CN={pattern}").parse::<Passport>() {
                let _ = p.check([(CommonName, value.as_str())].into_iter());
            }
        }
    }
}
