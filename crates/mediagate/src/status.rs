//! `mediagate status`: asks a running instance through its admin API and prints a
//! one-screen summary (roles, live streams, viewers, calls).
//!
//! What it does: HTTP/1.1 requests (GET, and POST with a JSON body for `mediagate
//! cache`) over one short-lived connection each, with connect and
//! read timeouts, the bearer token when given, and HTTPS (rustls) when the URL says
//! so: the server's certificate checked against `--cacert`, and a client certificate
//! (`--cert`, `--key`) for mutual TLS. Long lists are cut to a few lines with a count
//! of the rest. Strings that came from clients (user agents, URLs, tags) are printed
//! escaped, so a hostile one cannot drive the terminal.
//!
//! What it does not: the system's trust store (the API's CA is the operator's own),
//! redirects, or chunked bodies (the API sends neither).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

/// How long to wait for a connection and for an answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read.
const MAX_ANSWER: u64 = 16 << 20;
/// Lines shown per list.
const SHOWN: usize = 12;

/// Why `status` could not show the picture.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0}")]
    BadUrl(String),
    #[error("nothing answers at {url} ({why}); is mediagate running, with its admin API on that address ([admin] listen)?")]
    NoAnswer { url: String, why: String },
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} did not answer with the mediagate API ({0})", url = .1)]
    Garbled(String, String),
}

/// How to reach an API behind TLS.
#[derive(Debug, Default)]
pub struct TlsFiles {
    /// CA certificates (PEM) the API's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Where the API is: `host:port` and the URL as given (for messages).
pub(crate) struct Api {
    authority: String,
    base: String,
    token: Option<String>,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// The bearer token: given on the command line, else read from `file` (trimmed).
pub(crate) fn token_of(
    token: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, String> {
    match (token, file) {
        (Some(t), _) => Ok(Some(t)),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map(|text| Some(text.trim().to_owned()))
            .map_err(|e| format!("cannot read {}: {e}", file.display())),
        (None, None) => Ok(None),
    }
}

/// Prints the summary of the instance at `url` (`http://HOST:PORT` or `https://...`).
pub fn status(url: &str, token: Option<String>, tls: &TlsFiles) -> Result<String, StatusError> {
    let api = Api::new(url, token, tls)?;
    let roles = api.get("/api/v1/roles")?;
    summary(&api, roles)
}

impl Api {
    /// The API at `url` (`http://HOST:PORT` or `https://...`), with the bearer token
    /// and TLS files when given. Nothing is sent yet.
    pub(crate) fn new(
        url: &str,
        token: Option<String>,
        tls: &TlsFiles,
    ) -> Result<Api, StatusError> {
        let (https, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            _ => {
                return Err(StatusError::BadUrl(format!(
                "--admin {url:?}: give an http:// or https:// URL such as http://127.0.0.1:9554"
            )))
            }
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(StatusError::BadUrl(format!(
            "--admin {url:?}: give only the scheme, host and port, such as http://127.0.0.1:9554"
        )));
        }
        let tls = if https {
            Some(client_config(authority, tls).map_err(StatusError::BadUrl)?)
        } else {
            None
        };
        Ok(Api {
            authority: authority.to_owned(),
            base: format!("{}://{authority}", if https { "https" } else { "http" }),
            token,
            tls,
        })
    }
}

/// The rest of [`status`], once the API answered its first question.
fn summary(api: &Api, roles: Value) -> Result<String, StatusError> {
    let mut out = format!("mediagate at {}\n", api.base);
    let roles = roles.as_array().cloned().unwrap_or_default();
    out.push_str("roles:\n");
    for r in &roles {
        out.push_str(&format!(
            "  {:<8} {:<9} {} {}  ({})\n",
            text(&r["name"]),
            text(&r["state"]),
            r["sessions"],
            text(&r["unit"]),
            text(&r["serving"]),
        ));
    }
    let running = |name: &str| roles.iter().any(|r| r["name"] == name);
    if running("edge") {
        let streams = api.get("/api/v1/edge/streams")?;
        list(&mut out, "streams", &streams, |s| {
            format!(
                "{}  {} viewers  {}  {} packets in",
                escaped(&s["origin"]),
                s["viewers"],
                rate(s["bitrate_bps"].as_u64().unwrap_or(0)),
                s["packets_in"]
            )
        });
        let viewers = api.get("/api/v1/edge/viewers")?;
        list(&mut out, "viewers", &viewers, |v| {
            format!(
                "{}  {}  {}  {}  {:.0} s  {}  lost {}  {}",
                text(&v["id"]),
                text(&v["address"]),
                text(&v["transport"]),
                escaped(&v["url"]),
                v["watched_seconds"].as_f64().unwrap_or(0.0),
                bytes(v["bytes"].as_u64().unwrap_or(0)),
                v["lost"],
                escaped(&v["user_agent"]),
            )
        });
    }
    if running("relay") {
        let calls = api.get("/api/v1/relay/calls")?;
        list(&mut out, "calls", &calls, |c| {
            let streams = c["streams"].as_array().map_or(0, Vec::len);
            format!(
                "{}  {} -> {}  {}  {:.0} s  {} stream(s)",
                escaped(&c["call_id"]),
                escaped(&c["from_tag"]),
                escaped(&c["to_tag"]),
                if c["answered"] == true {
                    "answered"
                } else {
                    "ringing"
                },
                c["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                streams
            )
        });
    }
    if running("balancer") {
        balancer_lists(api, &mut out)?;
    }
    Ok(out)
}

/// `mediagate balancer status`: the balancer's services and back ends with their
/// counters.
pub fn balancer_status(
    url: &str,
    token: Option<String>,
    tls: &TlsFiles,
) -> Result<String, StatusError> {
    let api = Api::new(url, token, tls)?;
    let roles = api.get("/api/v1/roles")?;
    let running = roles
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["name"] == "balancer"));
    if !running {
        return Err(StatusError::Refused {
            url: api.base.clone(),
            status: 404,
            message: "this mediagate runs no balancer ([balancer] enabled = false)".into(),
        });
    }
    let mut out = format!("mediagate balancer at {}\n", api.base);
    balancer_lists(&api, &mut out)?;
    Ok(out)
}

/// `mediagate dispatcher summary|sessions`: `what` (`summary` or `sessions`) of the
/// running dispatcher, as one line holding a JSON array, as MediaProxy's management
/// interface answers it.
pub fn dispatcher_list(
    url: &str,
    token: Option<String>,
    tls: &TlsFiles,
    what: &str,
) -> Result<String, StatusError> {
    let api = Api::new(url, token, tls)?;
    let roles = api.get("/api/v1/roles")?;
    let running = roles
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["name"] == "dispatcher"));
    if !running {
        return Err(StatusError::Refused {
            url: api.base.clone(),
            status: 404,
            message: "this mediagate runs no dispatcher ([dispatcher] enabled = false)".into(),
        });
    }
    let list = api.get(&format!("/api/v1/dispatcher/{what}"))?;
    Ok(format!("{list}\n"))
}

fn balancer_lists(api: &Api, out: &mut String) -> Result<(), StatusError> {
    let services = api.get("/api/v1/balancer/services")?;
    list(out, "services", &services, |s| {
        format!(
            "{}  {}  on {}  {} sessions  {} connections open  {} requests  {} unknown sessions  {} bad requests",
            text(&s["name"]),
            text(&s["mode"]),
            s["listen"]
                .as_array()
                .map(|l| l.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            s["sessions"],
            s["connections_open"],
            s["requests_total"],
            s["unknown_sessions_total"],
            s["bad_requests_total"],
        )
    });
    let backends = api.get("/api/v1/balancer/backends")?;
    list(out, "back ends", &backends, |b| {
        format!(
            "{}  {}  {}  weight {}  {} sessions ({} in all)  {} in  {} out  {} packets  {} failed connects",
            text(&b["service"]),
            text(&b["backend"]),
            if b["up"] == true { "up" } else { "down" },
            b["weight"],
            b["sessions"],
            b["sessions_total"],
            bytes(b["bytes_in_total"].as_u64().unwrap_or(0)),
            bytes(b["bytes_out_total"].as_u64().unwrap_or(0)),
            b["packets_total"],
            b["connect_failures_total"],
        )
    });
    let failover = api.get("/api/v1/balancer/failover")?;
    out.push_str(&format!("failover: {}\n", failover_line(&failover)));
    Ok(())
}

/// One line for `/api/v1/balancer/failover`: this node's state as keepalived's
/// notify told it, and the session sync's connection.
fn failover_line(f: &Value) -> String {
    if f["configured"] != true {
        return "not configured (this node is always active)".into();
    }
    let mut parts = vec![format!(
        "{}{}",
        text(&f["state"]),
        match f["vrrp_state"].as_str() {
            Some(s) => format!(" (VRRP {s})"),
            None if f["vrrp_state_file"].is_string() => " (VRRP state file unreadable)".into(),
            None => String::new(),
        }
    )];
    if let Some(peer) = f["sync_peer"].as_str() {
        parts.push(format!(
            "sync to {peer} {}",
            if f["sync_peer_connected"] == true {
                "connected"
            } else {
                "not connected"
            }
        ));
    }
    if let Some(listen) = f["sync_listen"].as_str() {
        parts.push(match f["sync_from"].as_str() {
            Some(from) => format!(
                "taking the peer's table on {listen} from {from} ({} sessions held)",
                f["standby_sessions"]
            ),
            None => format!("no peer streaming to {listen}"),
        });
    }
    parts.push(format!("{} sessions taken over", f["taken_over_total"]));
    parts.join("; ")
}

/// A short list under a heading, at most [`SHOWN`] lines.
fn list(out: &mut String, what: &str, items: &Value, line: impl Fn(&Value) -> String) {
    let items = items.as_array().map(Vec::as_slice).unwrap_or_default();
    out.push_str(&format!("{what} ({}):\n", items.len()));
    for item in items.iter().take(SHOWN) {
        out.push_str(&format!("  {}\n", line(item)));
    }
    if items.len() > SHOWN {
        out.push_str(&format!("  ... and {} more\n", items.len() - SHOWN));
    }
}

/// A string value written by mediagate itself (names, states, addresses).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A string value that came from a client: quoted and escaped.
fn escaped(v: &Value) -> String {
    match v.as_str() {
        Some(s) => format!("{s:?}"),
        None => "-".to_owned(),
    }
}

fn rate(bps: u64) -> String {
    match bps {
        0..=9_999 => format!("{bps} bit/s"),
        10_000..=9_999_999 => format!("{:.0} kbit/s", bps as f64 / 1e3),
        _ => format!("{:.1} Mbit/s", bps as f64 / 1e6),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{:.0} kB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

/// The TLS client for `authority` (`host:port`): the server checked against `--cacert`,
/// with the client certificate when given.
fn client_config(
    authority: &str,
    files: &TlsFiles,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), String> {
    let ca = files
        .ca
        .as_ref()
        .ok_or("an https:// API needs --cacert FILE (the CA of its certificate)")?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = |path: &PathBuf| -> Result<Vec<CertificateDer<'static>>, String> {
        CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    for cert in certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    // See crates/ops/src/admin/tls.rs for why ring.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(certs(cert)?, key)
                .map_err(|e| format!("{}: {e}", cert.display()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--cert and --key go together".into()),
    };
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| format!("{host:?} is not a host name or address"))?;
    Ok((Arc::new(config), name))
}

/// A plain or TLS connection.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

impl Api {
    pub(crate) fn get(&self, path: &str) -> Result<Value, StatusError> {
        self.request("GET", path, None)
    }

    /// POSTs `body` as JSON.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<Value, StatusError> {
        self.request("POST", path, Some(body))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, StatusError> {
        let url = format!("{}{path}", self.base);
        let no_answer = |why: String| StatusError::NoAnswer {
            url: self.base.clone(),
            why,
        };
        let addr = self
            .authority
            .to_socket_addrs()
            .map_err(|e| no_answer(e.to_string()))?
            .next()
            .ok_or_else(|| no_answer("the name has no address".into()))?;
        let tcp =
            TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| no_answer(e.to_string()))?;
        tcp.set_read_timeout(Some(TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| no_answer(e.to_string()))?;
        let mut conn: Box<dyn Conn> = match &self.tls {
            None => Box::new(tcp),
            Some((config, name)) => {
                let session = rustls::ClientConnection::new(Arc::clone(config), name.clone())
                    .map_err(|e| no_answer(e.to_string()))?;
                Box::new(rustls::StreamOwned::new(session, tcp))
            }
        };
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = body.map(Value::to_string).unwrap_or_default();
        let content = if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
        };
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n{auth}{content}\r\n{body}",
            self.authority
        );
        conn.write_all(request.as_bytes())
            .map_err(|e| no_answer(e.to_string()))?;
        let mut raw = Vec::new();
        let read = conn.take(MAX_ANSWER).read_to_end(&mut raw);
        // A TLS peer that closes without close_notify still sent a whole answer
        // (Connection: close); anything else is a failure.
        if let Err(e) = read {
            if raw.is_empty() || e.kind() != std::io::ErrorKind::UnexpectedEof {
                return Err(no_answer(e.to_string()));
            }
        }
        let garbled = |why: &str| StatusError::Garbled(why.to_owned(), url.clone());
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| garbled("no HTTP header"))?;
        let head = String::from_utf8_lossy(&raw[..split]);
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| garbled("no HTTP status line"))?;
        let body: Value = serde_json::from_slice(&raw[split + 4..])
            .map_err(|_| garbled("the body is not JSON"))?;
        if status != 200 {
            let mut message = text(&body["error"]);
            if status == 401 && self.token.is_none() {
                message.push_str(" (pass --token-file FILE)");
            }
            return Err(StatusError::Refused {
                url,
                status,
                message,
            });
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failover_line_names_the_vrrp_state_and_the_sync_connection() {
        assert_eq!(
            failover_line(&serde_json::json!({"configured": false, "active": true})),
            "not configured (this node is always active)"
        );
        let standby = serde_json::json!({
            "configured": true, "active": false, "state": "standby",
            "vrrp_state_file": "/run/s", "vrrp_state": "BACKUP",
            "sync_peer": "10.0.0.11:5540", "sync_peer_connected": false,
            "sync_listen": "10.0.0.12:5540", "sync_from": "10.0.0.11:40000",
            "standby_sessions": 3, "taken_over_total": 0,
        });
        assert_eq!(
            failover_line(&standby),
            "standby (VRRP BACKUP); sync to 10.0.0.11:5540 not connected; taking the peer's table on 10.0.0.12:5540 from 10.0.0.11:40000 (3 sessions held); 0 sessions taken over"
        );
        let active = serde_json::json!({
            "configured": true, "active": true, "state": "active",
            "vrrp_state_file": "/run/s", "vrrp_state": "MASTER",
            "sync_peer": "10.0.0.12:5540", "sync_peer_connected": true,
            "sync_listen": null, "sync_from": null, "taken_over_total": 5,
        });
        assert_eq!(
            failover_line(&active),
            "active (VRRP MASTER); sync to 10.0.0.12:5540 connected; 5 sessions taken over"
        );
        let unreadable = serde_json::json!({
            "configured": true, "active": false, "state": "standby",
            "vrrp_state_file": "/run/s", "vrrp_state": null, "taken_over_total": 0,
        });
        assert_eq!(
            failover_line(&unreadable),
            "standby (VRRP state file unreadable); 0 sessions taken over"
        );
    }

    #[test]
    fn refuses_urls_it_cannot_use() {
        let none = TlsFiles::default();
        let e = status("ftp://127.0.0.1:9554", None, &none).unwrap_err();
        assert!(
            e.to_string().contains("give an http:// or https:// URL"),
            "{e}"
        );
        let e = status("https://127.0.0.1:9554", None, &none).unwrap_err();
        assert!(e.to_string().contains("needs --cacert FILE"), "{e}");
        let e = status("http://127.0.0.1:9554/api", None, &none).unwrap_err();
        assert!(
            e.to_string().contains("only the scheme, host and port"),
            "{e}"
        );
    }

    #[test]
    fn says_when_nothing_answers() {
        // A port that was free a moment ago: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = status(
            &format!("http://127.0.0.1:{port}"),
            None,
            &TlsFiles::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("nothing answers at http://127.0.0.1:{port} (")),
            "{e}"
        );
    }

    #[test]
    fn units_and_escapes() {
        assert_eq!(rate(15_000_000), "15.0 Mbit/s");
        assert_eq!(rate(1_500_000), "1500 kbit/s");
        assert_eq!(rate(64_000), "64 kbit/s");
        assert_eq!(bytes(2_345), "2345 B");
        assert_eq!(
            escaped(&Value::from("a\u{1b}[31mred")),
            "\"a\\u{1b}[31mred\""
        );
        assert_eq!(escaped(&Value::Null), "-");
    }
}
