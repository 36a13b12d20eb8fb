//! `[accounting]`: where finished-call and viewer-session records are stored.
//!
//! What it does: declares the optional PostgreSQL connection URL
//! (`postgres_url = "postgresql://user@host:port/db"`) and validates it while the file
//! is parsed, so a typo is reported with a line and column: the scheme, a user (the
//! client library has no default user), a host that is a DNS name, an IPv4 address, a
//! bracketed IPv6 address or a percent-encoded Unix socket directory
//! (`%2Frun%2Fpostgresql`), a port from 1 to 65535, an optional database name, and a
//! small set of query parameters. Without a URL, records go to the SQLite file
//! `accounting.sqlite` under `state_dir`.
//!
//! What it does not: connect (the relay does at start and refuses to start when the
//! server cannot be reached), TLS (`sslmode=require` and stricter are refused until the
//! store speaks TLS), several hosts in one URL, or libpq's environment variables.
//! URL syntax: RFC 3986 §3 as PostgreSQL's "connection URI" form uses it, read by the
//! `url` crate after our checks (shared with `url.rs`) have named any refusal.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::url::{
    is_path_byte as is_url_byte, parse_host_name, parse_port,
    percent_decode_strict as percent_decode, Host,
};
use super::value_error::{check_len, quoted, InvalidValue};

/// PostgreSQL's default TCP port.
pub(crate) const POSTGRES_DEFAULT_PORT: u16 = 5432;

/// Query parameters a URL may carry; the client library refuses others at connect
/// time, so they are refused here, where the error gets a position.
const ALLOWED_PARAMS: &[&str] = &[
    "application_name",
    "connect_timeout",
    "options",
    "sslmode",
    "target_session_attrs",
];

/// `[accounting]`: the accounting store shared by the roles.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountingConfig {
    /// PostgreSQL server for the records, as a URL
    /// (`postgresql://user[:password]@host[:port][/database][?param=value]`). The
    /// table is created when missing. If the server cannot be reached at start the
    /// relay refuses to start; if it goes away later, records are queued in memory
    /// (bounded) and retried, and overflow goes to the SQLite file under `state_dir`.
    /// No TLS yet. Default: none (records go to `state_dir/accounting.sqlite`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<PostgresUrl>,
}

/// Where a PostgreSQL server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresHost {
    /// A TCP host: a DNS name or an address.
    Tcp(Host),
    /// A directory holding the server's Unix socket (`/run/postgresql`).
    UnixSocketDir(String),
}

impl fmt::Display for PostgresHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(host) => host.fmt(f),
            Self::UnixSocketDir(dir) => f.write_str(dir),
        }
    }
}

/// A validated PostgreSQL connection URL, kept as written (the client library parses
/// the text itself). [`fmt::Debug`] and [`PostgresUrl::redacted`] hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    text: String,
    user: String,
    has_password: bool,
    host: PostgresHost,
    port: Option<u16>,
    dbname: Option<String>,
}

impl PostgresUrl {
    /// The URL exactly as written, password included: for the client library only.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The database user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The server's host or socket directory.
    pub fn host(&self) -> &PostgresHost {
        &self.host
    }

    /// The port, 5432 when the URL names none.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(POSTGRES_DEFAULT_PORT)
    }

    /// The database; PostgreSQL uses the user's name when the URL names none.
    pub fn dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.user)
    }

    /// The URL for logs and error messages: the password (in the user information or
    /// as a `password` parameter) replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_postgres_url(&self.text)
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUrl")
            .field("url", &self.redacted())
            .field("has_password", &self.has_password)
            .finish()
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Display feeds serialisation, which must give back the same config.
        f.write_str(&self.text)
    }
}

/// Replaces the password of a `postgres://` URL with `***`; text that is not such a
/// URL comes back unchanged. Used wherever a URL may reach a log line.
pub(crate) fn redact_postgres_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{hostport}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{head}{authority}{tail}")
}

impl FromStr for PostgresUrl {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        check_len(s, "a PostgreSQL URL")?;
        // The message quotes the redacted URL: config errors end up in logs.
        let bad = |why: &str| {
            InvalidValue::new(format!(
                "invalid PostgreSQL URL {}: {why}",
                quoted(&redact_postgres_url(s))
            ))
        };
        let rest = match s.split_once("://") {
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("postgresql")
                    || scheme.eq_ignore_ascii_case("postgres") =>
            {
                rest
            }
            _ => {
                return Err(bad(
                    "it must start with postgresql://, as in postgresql://mediagate@127.0.0.1:5432/mediagate",
                ))
            }
        };
        if let Some(b) = s.bytes().find(|&b| !is_url_byte(b)) {
            let shown = if b.is_ascii_graphic() {
                format!("{:?}", char::from(b))
            } else {
                format!("byte 0x{b:02x}")
            };
            return Err(bad(&format!(
                "it contains {shown}; percent-encode it (a space as %20)"
            )));
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };

        let Some((userinfo, hostport)) = authority.rsplit_once('@') else {
            return Err(bad(
                "the user is missing; write it before the host, as in postgresql://mediagate@127.0.0.1/mediagate",
            ));
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let user =
            percent_decode(user).ok_or_else(|| bad("bad percent-encoding in the user name"))?;
        if user.is_empty() {
            return Err(bad("the user name before '@' is empty"));
        }
        if let Some(p) = password {
            percent_decode(p).ok_or_else(|| bad("bad percent-encoding in the password"))?;
        }

        let (host, port) = parse_host_port(hostport).map_err(|why| bad(&why))?;

        let dbname = match path.strip_prefix('/') {
            None | Some("") => None,
            Some(name) => {
                let name = percent_decode(name)
                    .ok_or_else(|| bad("bad percent-encoding in the database name"))?;
                if name.contains('/') {
                    return Err(bad(
                        "the database name contains '/'; percent-encode it as %2F",
                    ));
                }
                Some(name)
            }
        };

        if let Some(query) = query {
            check_params(query).map_err(|why| bad(&why))?;
        }
        // The structure as the url crate reads it must agree with ours.
        let parsed = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        let user = percent_decode(parsed.username())
            .ok_or_else(|| bad("bad percent-encoding in the user name"))?;

        Ok(Self {
            text: s.to_owned(),
            user,
            has_password: password.is_some(),
            host,
            port,
            dbname,
        })
    }
}

fn parse_host_port(hostport: &str) -> Result<(PostgresHost, Option<u16>), String> {
    let (host, port_text) = if let Some(inner) = hostport.strip_prefix('[') {
        let (v6, after) = inner
            .split_once(']')
            .ok_or("the IPv6 address has no closing ']'")?;
        let v6: Ipv6Addr = v6
            .parse()
            .map_err(|_| format!("{} is not an IPv6 address", quoted(v6)))?;
        let port_text = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("expected ':' and a port after ']'")?,
            ),
        };
        (PostgresHost::Tcp(Host::Ip(IpAddr::V6(v6))), port_text)
    } else {
        if hostport.contains(',') {
            return Err("several hosts in one URL are not supported; name one server".into());
        }
        if hostport.matches(':').count() > 1 {
            return Err(
                "IPv6 addresses must be written in brackets, as in postgresql://u@[2001:db8::1]:5432/db"
                    .into(),
            );
        }
        let (host_text, port_text) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if host_text.is_empty() {
            return Err("the host is missing; name the server, as in @127.0.0.1:5432".into());
        }
        let host = if let Ok(ip) = host_text.parse::<IpAddr>() {
            PostgresHost::Tcp(Host::Ip(ip))
        } else if host_text.starts_with('%') {
            let dir =
                percent_decode(host_text).ok_or("bad percent-encoding in the socket directory")?;
            if !dir.starts_with('/') {
                return Err(format!(
                    "{} is neither a host name nor an absolute socket directory",
                    quoted(&dir)
                ));
            }
            PostgresHost::UnixSocketDir(dir)
        } else {
            PostgresHost::Tcp(Host::Name(parse_host_name(host_text).ok_or_else(|| {
                format!("{} is not a valid host name", quoted(host_text))
            })?))
        };
        (host, port_text)
    };
    let port = match port_text {
        None => None,
        Some(p) => Some(
            parse_port(p).ok_or_else(|| format!("{} is not a port from 1 to 65535", quoted(p)))?,
        ),
    };
    Ok((host, port))
}

fn check_params(query: &str) -> Result<(), String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "the parameter {} has no value; write key=value",
                quoted(pair)
            ));
        };
        let value = percent_decode(value)
            .ok_or_else(|| format!("bad percent-encoding in the value of {key}"))?;
        if !ALLOWED_PARAMS.contains(&key) {
            return Err(format!(
                "unknown parameter {}; allowed: {}",
                quoted(key),
                ALLOWED_PARAMS.join(", ")
            ));
        }
        match key {
            "sslmode" => match value.as_str() {
                "disable" | "prefer" => {}
                "require" | "verify-ca" | "verify-full" => {
                    return Err(format!(
                        "sslmode={value} needs TLS, which the accounting store does not speak yet; use sslmode=disable on a trusted network or a Unix socket"
                    ))
                }
                _ => {
                    return Err(format!(
                        "sslmode {} is not one of disable, prefer",
                        quoted(&value)
                    ))
                }
            },
            "connect_timeout"
                if value.is_empty()
                    || value.len() > 6
                    || !value.bytes().all(|b| b.is_ascii_digit()) =>
            {
                return Err(format!(
                    "connect_timeout {} is not a whole number of seconds",
                    quoted(&value)
                ));
            }
            "target_session_attrs" if !matches!(value.as_str(), "any" | "read-write") => {
                return Err(format!(
                    "target_session_attrs {} is not one of any, read-write",
                    quoted(&value)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a client needs beyond the parts above: read from the validated text, so the
/// store builds its connection from these and never parses the URL itself.
impl PostgresUrl {
    /// The password, percent-decoded; `None` when the URL has none.
    pub fn password(&self) -> Option<String> {
        let rest = self.text.split_once("://").map_or("", |(_, r)| r);
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let (userinfo, _) = authority.rsplit_once('@')?;
        let (_, password) = userinfo.split_once(':')?;
        percent_decode(password)
    }

    /// The query parameters in order, values percent-decoded (only the names in
    /// `ALLOWED_PARAMS` pass validation).
    pub fn params(&self) -> Vec<(String, String)> {
        let Some((_, query)) = self.text.split_once('?') else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter_map(|(k, v)| Some((k.to_owned(), percent_decode(v)?)))
            .collect()
    }
}

string_value_serde!(
    PostgresUrl,
    "a PostgreSQL URL such as \"postgresql://mediagate@127.0.0.1:5432/mediagate\""
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    fn url(s: &str) -> PostgresUrl {
        s.parse().unwrap()
    }

    #[test]
    fn password_and_params_are_decoded_for_the_client() {
        let u = url("postgresql://u:p%40ss%3Aw@h:5433/db?application_name=a%20b&sslmode=disable");
        assert_eq!(u.password().as_deref(), Some("p@ss:w"));
        assert_eq!(
            u.params(),
            [
                ("application_name".to_owned(), "a b".to_owned()),
                ("sslmode".to_owned(), "disable".to_owned())
            ]
        );
        let plain = url("postgresql://u@h/db");
        assert_eq!(plain.password(), None);
        assert!(plain.params().is_empty());
    }

    fn err(s: &str) -> String {
        s.parse::<PostgresUrl>().unwrap_err().to_string()
    }

    #[test]
    fn parses_tcp_urls() {
        let u = url("postgresql://mediagate:s%40cret@db.example.net:6543/acct?application_name=relay1&connect_timeout=3");
        assert_eq!(u.user(), "mediagate");
        assert_eq!(
            u.host(),
            &PostgresHost::Tcp(Host::Name("db.example.net".into()))
        );
        assert_eq!(u.port(), 6543);
        assert_eq!(u.dbname(), "acct");
        assert_eq!(
            u.as_str(),
            "postgresql://mediagate:s%40cret@db.example.net:6543/acct?application_name=relay1&connect_timeout=3"
        );

        let defaults = url("postgres://relay@127.0.0.1");
        assert_eq!(defaults.port(), 5432);
        assert_eq!(defaults.dbname(), "relay");
        assert_eq!(
            defaults.host(),
            &PostgresHost::Tcp(Host::Ip([127, 0, 0, 1].into()))
        );

        let v6 = url("POSTGRESQL://u@[2001:db8::1]:5432/");
        assert_eq!(v6.host().to_string(), "[2001:db8::1]");
        assert_eq!(v6.dbname(), "u");
    }

    #[test]
    fn parses_unix_socket_directories() {
        let u = url("postgresql://mediagate@%2Frun%2Fpostgresql/mediagate");
        assert_eq!(
            u.host(),
            &PostgresHost::UnixSocketDir("/run/postgresql".into())
        );
        assert_eq!(u.port(), 5432);
        assert!(err("postgresql://u@%72un/db").contains("neither a host name nor"));
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        assert_eq!(
            err("mysql://u@h/db"),
            "invalid PostgreSQL URL \"mysql://u@h/db\": it must start with postgresql://, as in postgresql://mediagate@127.0.0.1:5432/mediagate"
        );
        assert!(err("postgresql://127.0.0.1/db").contains("the user is missing"));
        assert!(err("postgresql://@127.0.0.1/db").contains("user name before '@' is empty"));
        assert!(err("postgresql://u@/db").contains("the host is missing"));
        assert!(err("postgresql://u@h:0/db").contains("\"0\" is not a port"));
        assert!(err("postgresql://u@h:65536/db").contains("is not a port"));
        assert!(err("postgresql://u@h:/db").contains("\"\" is not a port"));
        assert!(err("postgresql://u@2001:db8::1/db").contains("must be written in brackets"));
        assert!(err("postgresql://u@[2001:db8::1/db").contains("no closing ']'"));
        assert!(err("postgresql://u@[::1]x/db").contains("expected ':' and a port"));
        assert!(err("postgresql://u@a,b/db").contains("several hosts"));
        assert!(err("postgresql://u@bad_host!/db").contains("not a valid host name"));
        assert!(err("postgresql://u@h/d b").contains("contains byte 0x20"));
        assert!(err("postgresql://u@h/a%2").contains("bad percent-encoding in the database"));
        assert!(err("postgresql://u%zz@h/db").contains("bad percent-encoding in the user"));
        assert!(err("postgresql://u@h/db?sslmode=require").contains("needs TLS"));
        assert!(err("postgresql://u@h/db?sslmode=allow").contains("not one of disable, prefer"));
        assert!(err("postgresql://u@h/db?connect_timeout=soon").contains("whole number"));
        assert!(err("postgresql://u@h/db?target_session_attrs=x").contains("not one of any"));
        assert!(err("postgresql://u@h/db?sslmode").contains("has no value"));
        assert_eq!(
            err("postgresql://u@h/db?host=x"),
            "invalid PostgreSQL URL \"postgresql://u@h/db?host=x\": unknown parameter \"host\"; allowed: application_name, connect_timeout, options, sslmode, target_session_attrs"
        );
        assert!(url("postgresql://u@h/db?sslmode=disable&")
            .as_str()
            .ends_with('&'));
    }

    #[test]
    fn errors_and_debug_output_hide_the_password() {
        let e = err("postgresql://u:hunter2@h:0/db");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("postgresql://u:***@h:0/db"), "{e}");
        let u = url("postgresql://u:hunter2@h/db");
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(u.redacted(), "postgresql://u:***@h/db");
        // Display is for serialisation and keeps it.
        assert_eq!(u.to_string(), "postgresql://u:hunter2@h/db");
    }

    #[test]
    fn redaction_covers_every_place_a_password_goes() {
        assert_eq!(
            redact_postgres_url("postgresql://u:p@w@h/db?password=x&sslmode=disable"),
            "postgresql://u:***@h/db?password=***&sslmode=disable"
        );
        assert_eq!(redact_postgres_url("postgresql://u@h"), "postgresql://u@h");
        assert_eq!(redact_postgres_url("not a url"), "not a url");
    }

    #[test]
    fn loads_from_toml_with_a_position() {
        let ok: AccountingConfig =
            toml::from_str("postgres_url = \"postgresql://u@h/db\"\n").unwrap();
        assert_eq!(ok.postgres_url.unwrap().dbname(), "db");
        let e = toml::from_str::<AccountingConfig>("postgres_url = \"postgresql://h/db\"\n")
            .unwrap_err();
        assert_eq!(e.span(), Some(15..34));
        assert!(e.message().contains("the user is missing"), "{e}");
        assert!(toml::from_str::<AccountingConfig>("postgres = \"x\"\n").is_err());
        assert_eq!(AccountingConfig::default().postgres_url, None);
    }

    #[test]
    fn a_bad_url_in_a_config_file_gets_line_and_column() {
        let text = "[relay]\nenabled = true\nmedia_address = [{ address = \"192.0.2.1\" }]\n\n[accounting]\npostgres_url = \"postgresql://db.example:5432/acct\"\n";
        let errors = crate::parse_config(text).unwrap_err();
        assert_eq!(
            crate::render_errors("m.toml", text, &errors),
            "m.toml:6:16: invalid PostgreSQL URL \"postgresql://db.example:5432/acct\": the user is missing; write it before the host, as in postgresql://mediagate@127.0.0.1/mediagate\n"
        );
        let typo = "[accounting]\npostgress_url = \"postgresql://u@h/db\"\n";
        let errors = crate::parse_config(typo).unwrap_err();
        let rendered = crate::render_errors("m.toml", typo, &errors);
        assert!(rendered.starts_with("m.toml:2:1: "), "{rendered}");
        let ok = crate::parse_config(
            "[accounting]\npostgres_url = \"postgresql://relay@%2Frun%2Fpostgresql/acct\"\n",
        )
        .unwrap();
        assert_eq!(
            ok.accounting.postgres_url.map(|u| u.host().to_string()),
            Some("/run/postgresql".into())
        );
    }

    #[test]
    fn display_round_trips() {
        let mut rng = Rng::new(23);
        let mut parsed_count = 0;
        for _ in 0..3_000 {
            let user = rng.string_from(b"abcZ9._-%40", 8);
            let pass = rng.string_from(b"xyz%3A%40!", 8);
            let db = rng.string_from(b"db_1%2F", 6);
            let text = format!("postgresql://{user}:{pass}@db.example:5433/{db}");
            if let Ok(parsed) = text.parse::<PostgresUrl>() {
                parsed_count += 1;
                assert_eq!(parsed.to_string(), text);
                assert_eq!(parsed.to_string().parse::<PostgresUrl>(), Ok(parsed));
            }
        }
        assert!(parsed_count > 300, "only {parsed_count} valid cases");
    }

    #[test]
    fn never_panics_on_arbitrary_text() {
        let mut rng = Rng::new(29);
        for _ in 0..20_000 {
            let tail = rng.string_from(b"pu:/@[]%2Fa.?=&,1h", 24);
            for s in [tail.clone(), format!("postgresql://{tail}")] {
                let _ = s.parse::<PostgresUrl>();
                let _ = redact_postgres_url(&s);
            }
        }
    }
}
