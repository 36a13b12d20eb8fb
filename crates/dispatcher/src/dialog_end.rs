//! Ending a call's dialog on the SIP proxy when the relays ended its media (every
//! stream timed out, or the relay no longer has the call after a reconnect), so both
//! phones get a BYE (anchors c.2, issue 15 item 4).
//!
//! One transport for both proxies: JSON-RPC 2.0 in one datagram each way, over UDP or
//! a UNIX datagram socket.
//! * Kamailio: the `jsonrpcs` module's datagram transport (`modparam("jsonrpcs",
//!   "transport", 4)`, or 6, its default, with FIFO), `modparam("jsonrpcs", "dgram_socket",
//!   "udp:127.0.0.1:8090")` or a socket path). With MediaProxy's dialog id
//!   (`h_entry << 32 | h_id`, what the `mediaproxy` module's `engage_media_proxy`
//!   sends) the method is `dlg.end_dlg` with params `[h_entry, h_id]`; with only
//!   Call-ID and tags (calls from the `ng` front door) it is `dlg.terminate_dlg` with
//!   `[call_id, from_tag, to_tag]`.
//! * OpenSIPS: the `mi_datagram` module (MediaProxy's `[OpenSIPS] socket_path`,
//!   `/run/opensips/socket`), method `dlg_end_dlg`, params `[dialog_id]` as MediaProxy
//!   sends them; with only a Call-ID, `[call_id]` (OpenSIPS 3 takes a Call-ID as
//!   the dialog id).
//!
//! Datagrams, not HTTP, because both proxies have them, so one client covers both
//! (the relay's own HTTP notifier, `engine::notify`, stays the relay's).
//!
//! What it does: builds the request ([`rpc_request`]), checks the reply (bounded,
//! [`check_reply`]: a JSON-RPC `result` for our id, or its `error` as an error), and
//! sends with a timeout and retries ([`DialogEnder`]). What it does not: decide when
//! a dialog should end (the session map does), or queue requests across a proxy
//! restart (a proxy that restarted has lost its dialogs anyway).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value as Json};

/// Longest reply accepted; Kamailio's `dlg.list` of a few hundred dialogs fits.
pub const MAX_REPLY: usize = 64 * 1024;

/// Which SIP proxy, and so which method names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipProxy {
    /// Kamailio `dialog` + `jsonrpcs`.
    Kamailio,
    /// OpenSIPS `dialog` + `mi_datagram`.
    OpenSips,
}

/// Which dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogRef<'a> {
    /// The proxy's dialog id, `h_entry << 32 | h_id` (MediaProxy's `dialog_id`).
    Id(u64),
    /// Call-ID and tags, when the proxy sent no dialog id.
    Tags {
        /// Call-ID.
        call_id: &'a str,
        /// From tag.
        from_tag: &'a str,
        /// To tag.
        to_tag: &'a str,
    },
}

/// The JSON-RPC request ending `dialog`, with request id `id`.
pub fn end_request(proxy: SipProxy, dialog: DialogRef<'_>, id: u64) -> Vec<u8> {
    let (method, params) = match (proxy, dialog) {
        (SipProxy::Kamailio, DialogRef::Id(d)) => {
            ("dlg.end_dlg", json!([d >> 32, d & 0xffff_ffff]))
        }
        (
            SipProxy::Kamailio,
            DialogRef::Tags {
                call_id,
                from_tag,
                to_tag,
            },
        ) => ("dlg.terminate_dlg", json!([call_id, from_tag, to_tag])),
        (SipProxy::OpenSips, DialogRef::Id(d)) => ("dlg_end_dlg", json!([d.to_string()])),
        (SipProxy::OpenSips, DialogRef::Tags { call_id, .. }) => ("dlg_end_dlg", json!([call_id])),
    };
    rpc_request(method, params, id)
}

/// A JSON-RPC 2.0 request.
pub fn rpc_request(method: &str, params: Json, id: u64) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id})
        .to_string()
        .into_bytes()
}

/// Why a reply is not a success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// Over [`MAX_REPLY`] bytes.
    #[error("JSON-RPC reply of {0} bytes is over the {MAX_REPLY}-byte limit")]
    TooLong(usize),
    /// Not JSON, or not a JSON-RPC response object.
    #[error("JSON-RPC reply is not valid at byte {offset}: {reason}")]
    Invalid {
        /// Where the JSON went wrong (0 when it parsed but has the wrong shape).
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// For another request.
    #[error("JSON-RPC reply for request {got}, expected {expected}")]
    OtherId {
        /// The reply's id.
        got: String,
        /// Ours.
        expected: u64,
    },
    /// The proxy refused: for example no such dialog (Kamailio: 404 "Requested
    /// Dialog not terminated").
    #[error("the SIP proxy answered error {code}: {message}")]
    Refused {
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
}

/// Reads a reply to request `id`: `Ok(result)` (`null` when the proxy sent none).
pub fn check_reply(reply: &[u8], id: u64) -> Result<Json, RpcError> {
    if reply.len() > MAX_REPLY {
        return Err(RpcError::TooLong(reply.len()));
    }
    let value: Json = serde_json::from_slice(reply).map_err(|e| RpcError::Invalid {
        offset: byte_offset(reply, e.line(), e.column()),
        reason: e.to_string(),
    })?;
    let Some(obj) = value.as_object() else {
        return Err(invalid("not a JSON object"));
    };
    match obj.get("id") {
        Some(Json::Number(n)) if n.as_u64() == Some(id) => {}
        // A reply to a request the proxy could not parse carries a null id.
        Some(Json::Null) | None if obj.contains_key("error") => {}
        Some(other) => {
            return Err(RpcError::OtherId {
                got: other.to_string(),
                expected: id,
            })
        }
        None => return Err(invalid("no id")),
    }
    if let Some(err) = obj.get("error") {
        return Err(RpcError::Refused {
            code: err.get("code").and_then(Json::as_i64).unwrap_or_default(),
            message: err
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    Ok(obj.get("result").cloned().unwrap_or(Json::Null))
}

fn invalid(reason: &str) -> RpcError {
    RpcError::Invalid {
        offset: 0,
        reason: reason.to_owned(),
    }
}

/// serde_json reports line and column (1-based); the byte offset is what a capture
/// shows.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = bytes
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum();
    (line_start + column.saturating_sub(1)).min(bytes.len())
}

/// Where the proxy's datagram RPC listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcTarget {
    /// `udp:ip:port`.
    Udp(std::net::SocketAddr),
    /// A UNIX datagram socket; replies come to a socket of ours in `reply_dir`.
    Unix {
        /// The proxy's socket.
        path: PathBuf,
        /// Where to bind our reply socket (a directory the proxy may write to).
        reply_dir: PathBuf,
    },
}

/// Why a dialog could not be ended.
#[derive(Debug, thiserror::Error)]
pub enum DialogEndError {
    /// No reply after every try.
    #[error("the SIP proxy's RPC did not answer after {tries} tries")]
    NoReply {
        /// Tries made.
        tries: u32,
    },
    /// The proxy answered with an error, or garbage.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The socket failed.
    #[error("SIP proxy RPC socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Ends dialogs on one SIP proxy.
#[derive(Debug)]
pub struct DialogEnder {
    proxy: SipProxy,
    target: RpcTarget,
    timeout: Duration,
    tries: u32,
    next_id: AtomicU64,
}

impl DialogEnder {
    /// A client for `proxy` at `target`: each try waits `timeout`, `tries` in all.
    pub fn new(proxy: SipProxy, target: RpcTarget, timeout: Duration, tries: u32) -> Self {
        Self {
            proxy,
            target,
            timeout,
            tries: tries.max(1),
            next_id: AtomicU64::new(1),
        }
    }

    /// Ends `dialog`; `Ok` once the proxy confirmed.
    pub async fn end(&self, dialog: DialogRef<'_>) -> Result<(), DialogEndError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.exchange(&end_request(self.proxy, dialog, id), id)
            .await
            .map(drop)
    }

    /// Any method, for what else the dispatcher asks the proxy (and tests: `dlg.list`).
    pub async fn call(&self, method: &str, params: Json) -> Result<Json, DialogEndError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.exchange(&rpc_request(method, params, id), id).await
    }

    async fn exchange(&self, request: &[u8], id: u64) -> Result<Json, DialogEndError> {
        match &self.target {
            RpcTarget::Udp(addr) => {
                let bind: std::net::SocketAddr = if addr.is_ipv4() {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = tokio::net::UdpSocket::bind(bind).await?;
                socket.connect(addr).await?;
                self.tries_over(id, request, &Socket::Udp(socket)).await
            }
            RpcTarget::Unix { path, reply_dir } => {
                let ours =
                    reply_dir.join(format!("mediagate-rpc-{}-{id}.sock", std::process::id()));
                let _ = std::fs::remove_file(&ours);
                let socket = tokio::net::UnixDatagram::bind(&ours)?;
                let result = match socket.connect(path) {
                    Ok(()) => self.tries_over(id, request, &Socket::Unix(socket)).await,
                    Err(e) => Err(e.into()),
                };
                let _ = std::fs::remove_file(&ours);
                result
            }
        }
    }

    async fn tries_over(
        &self,
        id: u64,
        request: &[u8],
        socket: &Socket,
    ) -> Result<Json, DialogEndError> {
        let mut buf = vec![0u8; MAX_REPLY + 1];
        let mut last_error = None;
        for _ in 0..self.tries {
            // A refused send (nothing listens yet) counts as an unanswered try.
            let _ = socket.send(request).await;
            let deadline = tokio::time::Instant::now() + self.timeout;
            loop {
                let read = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(read) => read,
                };
                let Ok(n) = read else {
                    tokio::time::sleep_until(deadline).await;
                    break;
                };
                match check_reply(&buf[..n], id) {
                    Ok(result) => return Ok(result),
                    // A late reply to an earlier request: keep waiting for ours.
                    Err(RpcError::OtherId { .. }) => {}
                    Err(e @ RpcError::Refused { .. }) => return Err(e.into()),
                    Err(e) => last_error = Some(e),
                }
            }
        }
        Err(last_error.map_or(DialogEndError::NoReply { tries: self.tries }, Into::into))
    }
}

/// A connected datagram socket of either family.
enum Socket {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram),
}

impl Socket {
    async fn send(&self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Udp(s) => s.send(bytes).await,
            Self::Unix(s) => s.send(bytes).await,
        }
    }

    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Udp(s) => s.recv(buf).await,
            Self::Unix(s) => s.recv(buf).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(bytes: &[u8]) -> Json {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn requests_for_both_proxies() {
        let id = (7u64 << 32) | 12345;
        assert_eq!(
            parsed(&end_request(SipProxy::Kamailio, DialogRef::Id(id), 3)),
            json!({"jsonrpc": "2.0", "method": "dlg.end_dlg", "params": [7, 12345], "id": 3})
        );
        let tags = DialogRef::Tags {
            call_id: "c@h",
            from_tag: "f",
            to_tag: "t",
        };
        assert_eq!(
            parsed(&end_request(SipProxy::Kamailio, tags, 4))["params"],
            json!(["c@h", "f", "t"])
        );
        assert_eq!(
            parsed(&end_request(SipProxy::Kamailio, tags, 4))["method"],
            "dlg.terminate_dlg"
        );
        assert_eq!(
            parsed(&end_request(SipProxy::OpenSips, DialogRef::Id(id), 5)),
            json!({"jsonrpc": "2.0", "method": "dlg_end_dlg", "params": [id.to_string()], "id": 5})
        );
        assert_eq!(
            parsed(&end_request(SipProxy::OpenSips, tags, 6))["params"],
            json!(["c@h"])
        );
    }

    #[test]
    fn replies() {
        assert_eq!(
            check_reply(br#"{"jsonrpc":"2.0","result":"ok","id":3}"#, 3),
            Ok(json!("ok"))
        );
        assert_eq!(
            check_reply(br#"{"jsonrpc":"2.0","id":3}"#, 3),
            Ok(Json::Null)
        );
        assert_eq!(
            check_reply(
                br#"{"jsonrpc":"2.0","error":{"code":404,"message":"Requested Dialog not terminated"},"id":3}"#,
                3
            ),
            Err(RpcError::Refused {
                code: 404,
                message: "Requested Dialog not terminated".into()
            })
        );
        assert!(matches!(
            check_reply(br#"{"jsonrpc":"2.0","error":{"code":-32700},"id":null}"#, 3),
            Err(RpcError::Refused { code: -32700, .. })
        ));
        assert_eq!(
            check_reply(br#"{"jsonrpc":"2.0","result":1,"id":2}"#, 3),
            Err(RpcError::OtherId {
                got: "2".into(),
                expected: 3
            })
        );
        assert!(matches!(
            check_reply(b"{\"a\":\n  [1,}", 3),
            Err(RpcError::Invalid { offset: 11, .. })
        ));
        assert!(matches!(
            check_reply(b"[1]", 3),
            Err(RpcError::Invalid { offset: 0, .. })
        ));
        assert_eq!(
            check_reply(&vec![b' '; MAX_REPLY + 1], 3),
            Err(RpcError::TooLong(MAX_REPLY + 1))
        );
    }

    proptest! {
        #[test]
        fn replies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Err(RpcError::Invalid { offset, .. }) = check_reply(&data, 1) {
                prop_assert!(offset <= data.len());
            }
        }
    }

    #[tokio::test]
    async fn retries_until_answered_over_unix_datagrams() {
        let dir = std::env::temp_dir().join(format!("mg-dlgend-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server_path = dir.join("proxy.sock");
        let server = tokio::net::UnixDatagram::bind(&server_path).unwrap();
        let proxy = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // Ignore the first try, answer the second (after a stray reply).
            let (_, _) = server.recv_from(&mut buf).await.unwrap();
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let req: Json = serde_json::from_slice(&buf[..n]).unwrap();
            let from = from.as_pathname().unwrap().to_owned();
            server
                .send_to(br#"{"jsonrpc":"2.0","result":"x","id":999}"#, &from)
                .await
                .unwrap();
            let reply = json!({"jsonrpc": "2.0", "result": null, "id": req["id"]});
            server
                .send_to(reply.to_string().as_bytes(), &from)
                .await
                .unwrap();
            req
        });
        let ender = DialogEnder::new(
            SipProxy::OpenSips,
            RpcTarget::Unix {
                path: server_path,
                reply_dir: dir.clone(),
            },
            Duration::from_millis(100),
            3,
        );
        ender.end(DialogRef::Id(42)).await.unwrap();
        let req = proxy.await.unwrap();
        assert_eq!(req["method"], "dlg_end_dlg");
        assert_eq!(req["params"], json!(["42"]));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "our reply socket is removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_silent_proxy_is_reported() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ender = DialogEnder::new(
            SipProxy::Kamailio,
            RpcTarget::Udp(silent.local_addr().unwrap()),
            Duration::from_millis(30),
            2,
        );
        let r = ender.end(DialogRef::Id(1)).await;
        assert!(
            matches!(r, Err(DialogEndError::NoReply { tries: 2 })),
            "{r:?}"
        );
    }
}
