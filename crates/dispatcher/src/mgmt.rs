//! MediaProxy's management interface (anchors c.3): a line protocol for monitoring
//! scripts, served over any byte stream (TLS in production).
//!
//! The wire, as MediaProxy's dispatcher and its bundled PHP client use it:
//! * requests are lines: `summary`, `sessions`, `version`, `quit` or `exit`; anything
//!   else (an empty line too) is answered `error`. A request is the whole line, case
//!   and spaces included, as MediaProxy compares it.
//! * each answer is exactly one CRLF-terminated line: `summary` and `sessions` one
//!   JSON array (relays, and sessions flattened across relays), `version` the bare
//!   version string, `error`. `quit`/`exit` close the connection without an answer.
//!   (MediaProxy's README describes "one line per session, then an empty line"; its
//!   code and its PHP client do one line holding one array, and that is what runs.)
//!
//! Tolerated: a line ending in a bare LF (the CR is optional); several requests in one
//! read (answered in order). Rejected: a line longer than [`MAX_LINE`] bytes, after
//! which the connection closes (MediaProxy's `LineOnlyReceiver` drops such a peer
//! too), a peer with no complete request for the idle timeout (a trickle of bytes does
//! not keep it open), and a peer that does not read an answer within the idle timeout
//! (each holds one of the few connection slots).
//!
//! Transports: [`serve_connection`] takes any `AsyncRead + AsyncWrite`; [`serve_tls`]
//! serves it over mutual TLS with the node's certificates (MediaProxy's default) and
//! an optional passport for clients; [`serve_tcp`] over plain TCP (for loopback).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::session_stats::ClusterView;

/// Longest request line, bytes (the longest command is 8).
pub const MAX_LINE: usize = 256;

/// A management request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MgmtRequest {
    /// `summary`: the relays.
    Summary,
    /// `sessions`: every call.
    Sessions,
    /// `version`.
    Version,
    /// `quit` or `exit`.
    Quit,
    /// Anything else.
    Unknown,
}

/// What [`parse_request`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// No complete line yet, and the buffer is within [`MAX_LINE`].
    Incomplete,
    /// A request whose line (terminator included) took `consumed` bytes.
    Request {
        /// The request.
        request: MgmtRequest,
        /// Bytes to drop from the buffer.
        consumed: usize,
    },
    /// No line end within the first [`MAX_LINE`] + 2 bytes: the peer is not speaking
    /// this protocol. `offset` is where the line ought to have ended.
    TooLong {
        /// Byte offset past which no terminator may appear.
        offset: usize,
    },
}

/// Reads one request from the start of `buf`.
pub fn parse_request(buf: &[u8]) -> Parsed {
    // The line itself may be MAX_LINE long, plus CR LF.
    let window = &buf[..buf.len().min(MAX_LINE + 2)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_LINE + 1 {
            Parsed::TooLong { offset: MAX_LINE }
        } else {
            Parsed::Incomplete
        };
    };
    let line = &buf[..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > MAX_LINE {
        return Parsed::TooLong { offset: MAX_LINE };
    }
    let request = match line {
        b"summary" => MgmtRequest::Summary,
        b"sessions" => MgmtRequest::Sessions,
        b"version" => MgmtRequest::Version,
        b"quit" | b"exit" => MgmtRequest::Quit,
        _ => MgmtRequest::Unknown,
    };
    Parsed::Request {
        request,
        consumed: lf + 1,
    }
}

/// The answer line to `request`, CRLF included; `None` for `quit`/`exit`. How long it
/// takes is the view's bound (a relay that does not answer is not waited for).
pub async fn answer(request: MgmtRequest, view: &dyn ClusterView) -> Option<Vec<u8>> {
    let mut line = match request {
        MgmtRequest::Summary => json_array(&view.summary().await),
        MgmtRequest::Sessions => json_array(&view.sessions().await),
        MgmtRequest::Version => env!("CARGO_PKG_VERSION").as_bytes().to_vec(),
        MgmtRequest::Quit => return None,
        MgmtRequest::Unknown => b"error".to_vec(),
    };
    line.extend_from_slice(b"\r\n");
    Some(line)
}

fn json_array<T: serde::Serialize>(items: &[T]) -> Vec<u8> {
    // serde_json writes no raw newline inside a value (strings escape it), so the
    // array is one line whatever a Call-ID or User-Agent holds.
    serde_json::to_vec(items).unwrap_or_else(|_| b"error".to_vec())
}

/// Limits of one management connection.
#[derive(Debug, Clone, Copy)]
pub struct MgmtOptions {
    /// A connection with no complete request for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listener's backlog.
    pub max_connections: usize,
}

impl Default for MgmtOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(60),
            max_connections: 32,
        }
    }
}

/// Why a management connection ended other than by the peer.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    /// A line over [`MAX_LINE`].
    #[error("management request line longer than {MAX_LINE} bytes; closing")]
    LineTooLong,
    /// No request within the idle timeout.
    #[error("management client idle for {0:?}; closing")]
    Idle(Duration),
    /// Reading or writing failed.
    #[error("management connection: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves one connection until the peer quits or closes, or a limit ends it.
pub async fn serve_connection<S>(
    mut io: S,
    view: &dyn ClusterView,
    options: &MgmtOptions,
) -> Result<(), MgmtError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(MAX_LINE);
    let mut chunk = [0u8; 512];
    let mut due = tokio::time::Instant::now() + options.idle_timeout;
    loop {
        loop {
            match parse_request(&buf) {
                Parsed::Incomplete => break,
                Parsed::TooLong { .. } => return Err(MgmtError::LineTooLong),
                Parsed::Request { request, consumed } => {
                    buf.drain(..consumed);
                    match answer(request, view).await {
                        Some(line) => write_within(&mut io, &line, options.idle_timeout).await?,
                        None => {
                            io.shutdown().await?;
                            return Ok(());
                        }
                    }
                    due = tokio::time::Instant::now() + options.idle_timeout;
                }
            }
        }
        tokio::time::timeout(options.idle_timeout, io.flush())
            .await
            .map_err(|_| not_reading(options.idle_timeout))??;
        let n = match tokio::time::timeout_at(due, io.read(&mut chunk)).await {
            Err(_) => return Err(MgmtError::Idle(options.idle_timeout)),
            Ok(read) => read?,
        };
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes `line`, giving up when the peer has not taken it within `limit`.
async fn write_within<S>(io: &mut S, line: &[u8], limit: Duration) -> Result<(), MgmtError>
where
    S: AsyncWrite + Unpin,
{
    tokio::time::timeout(limit, io.write_all(line))
        .await
        .map_err(|_| not_reading(limit))??;
    Ok(())
}

fn not_reading(limit: Duration) -> MgmtError {
    MgmtError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the client did not read its answer within {limit:?}; closing"),
    ))
}

/// Accepts management clients on `listener` until the task is dropped, serving at
/// most `options.max_connections` at once.
pub async fn serve_tcp(
    listener: TcpListener,
    view: Arc<dyn ClusterView>,
    options: MgmtOptions,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = listener.accept().await?;
        let view = Arc::clone(&view);
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, view.as_ref(), &options).await {
                tracing::info!(%peer, error = %e, "management client closed");
            }
            drop(permit);
        });
    }
}

/// How long a management client has for its TLS handshake.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);

/// [`serve_tcp`] over mutual TLS, as MediaProxy serves it (`management_use_tls`):
/// `tls` is the node's server config (clients need a certificate from the node's CA,
/// not revoked by its CRL); with a `passport`, the client certificate's subject must
/// match it too. Refusals are logged with the client's address.
pub async fn serve_tls(
    listener: TcpListener,
    view: Arc<dyn ClusterView>,
    options: MgmtOptions,
    tls: Arc<rustls::ServerConfig>,
    passport: Option<mediagate_config::Passport>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let passport = Arc::new(passport);
    let slots = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = listener.accept().await?;
        let (view, acceptor, passport) =
            (Arc::clone(&view), acceptor.clone(), Arc::clone(&passport));
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_WAIT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    let why = mediagate_link::tls::explain_handshake_error(&e);
                    tracing::warn!(%peer, "dispatcher: refused management client {peer}: {why}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "dispatcher: refused management client {peer}: TLS handshake timed out");
                    return;
                }
            };
            let checked = mediagate_link::tls::check_peer(
                tls.get_ref().1.peer_certificates(),
                passport.as_ref().as_ref(),
            );
            if let Err(why) = checked {
                tracing::warn!(%peer, "dispatcher: refused management client {peer}: {why}");
                return;
            }
            if let Err(e) = serve_connection(tls, view.as_ref(), &options).await {
                tracing::info!(%peer, error = %e, "management client closed");
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session_stats::{MediaProxySession, RelaySummary, SipInfo};
    use mediagate_relay::record::SessionRecord;
    use proptest::prelude::*;

    struct Fixed;

    impl ClusterView for Fixed {
        fn summary(&self) -> crate::pool::PoolFuture<'_, Vec<RelaySummary>> {
            Box::pin(async { vec![RelaySummary::error("192.0.2.9")] })
        }
        fn sessions(&self) -> crate::pool::PoolFuture<'_, Vec<MediaProxySession>> {
            let record = SessionRecord {
                call_id: "a\r\nb".into(),
                ..SessionRecord::default()
            };
            let sessions = vec![MediaProxySession::from_record(&record, &SipInfo::default())];
            Box::pin(async move { sessions })
        }
    }

    #[test]
    fn requests_and_their_lines() {
        let req = |b: &[u8]| parse_request(b);
        assert_eq!(
            req(b"summary\r\nsess"),
            Parsed::Request {
                request: MgmtRequest::Summary,
                consumed: 9
            }
        );
        assert_eq!(
            req(b"sessions\n"),
            Parsed::Request {
                request: MgmtRequest::Sessions,
                consumed: 9
            }
        );
        for (line, want) in [
            (&b"version\r\n"[..], MgmtRequest::Version),
            (b"quit\r\n", MgmtRequest::Quit),
            (b"exit\r\n", MgmtRequest::Quit),
            (b"\r\n", MgmtRequest::Unknown),
            (b"Summary\r\n", MgmtRequest::Unknown),
            (b"summary \r\n", MgmtRequest::Unknown),
            (b"summary\r\r\n", MgmtRequest::Unknown),
        ] {
            assert!(
                matches!(req(line), Parsed::Request { request, .. } if request == want),
                "{line:?}"
            );
        }
        assert_eq!(req(b"summ"), Parsed::Incomplete);
        assert_eq!(req(b""), Parsed::Incomplete);
        let long = vec![b'x'; MAX_LINE];
        assert_eq!(
            req(&long),
            Parsed::Incomplete,
            "exactly the cap may still end"
        );
        let mut at_cap = long.clone();
        at_cap.extend_from_slice(b"\r\n");
        assert!(matches!(req(&at_cap), Parsed::Request { .. }));
        let over = vec![b'x'; MAX_LINE + 2];
        assert_eq!(req(&over), Parsed::TooLong { offset: MAX_LINE });
        let mut over_then_end = vec![b'x'; MAX_LINE + 1];
        over_then_end.extend_from_slice(b"\r\n");
        assert_eq!(req(&over_then_end), Parsed::TooLong { offset: MAX_LINE });
    }

    #[test]
    fn answers_are_one_line_each() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let a = |r| {
            runtime
                .block_on(answer(r, &Fixed))
                .map(|l| String::from_utf8(l).unwrap())
        };
        assert_eq!(
            a(MgmtRequest::Summary).unwrap(),
            "[{\"status\":\"error\",\"ip\":\"192.0.2.9\"}]\r\n"
        );
        let sessions = a(MgmtRequest::Sessions).unwrap();
        assert!(
            sessions.starts_with("[{\"call_id\":\"a\\r\\nb\""),
            "{sessions}"
        );
        assert_eq!(
            sessions.matches('\n').count(),
            1,
            "a Call-ID's CR LF is escaped"
        );
        assert_eq!(
            a(MgmtRequest::Version).unwrap(),
            format!("{}\r\n", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(a(MgmtRequest::Unknown).unwrap(), "error\r\n");
        assert_eq!(a(MgmtRequest::Quit), None);
    }

    proptest! {
        #[test]
        fn never_panics_and_stays_in_bounds(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            match parse_request(&data) {
                Parsed::Incomplete => prop_assert!(data.len() <= MAX_LINE + 1),
                Parsed::Request { consumed, .. } => {
                    prop_assert!(consumed <= data.len() && consumed <= MAX_LINE + 2);
                    prop_assert_eq!(data[consumed - 1], b'\n');
                }
                Parsed::TooLong { offset } => prop_assert!(offset < data.len()),
            }
        }
    }

    #[tokio::test]
    async fn a_client_over_a_duplex_stream() {
        let (client, server) = tokio::io::duplex(4096);
        let opts = MgmtOptions::default();
        let task = tokio::spawn(async move { serve_connection(server, &Fixed, &opts).await });
        let (mut rd, mut wr) = tokio::io::split(client);
        wr.write_all(b"version\r\nnope\nsumm").await.unwrap();
        wr.write_all(b"ary\r\nquit\r\n").await.unwrap();
        let mut out = String::new();
        rd.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            out,
            format!(
                "{}\r\nerror\r\n[{{\"status\":\"error\",\"ip\":\"192.0.2.9\"}}]\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn overlong_lines_and_idle_peers_are_dropped() {
        let (mut client, server) = tokio::io::duplex(4096);
        let opts = MgmtOptions::default();
        let task = tokio::spawn(async move { serve_connection(server, &Fixed, &opts).await });
        client.write_all(&[b'a'; MAX_LINE + 10]).await.unwrap();
        assert!(matches!(task.await.unwrap(), Err(MgmtError::LineTooLong)));

        let (_client, server) = tokio::io::duplex(4096);
        let opts = MgmtOptions {
            idle_timeout: Duration::from_millis(50),
            ..MgmtOptions::default()
        };
        let r = serve_connection(server, &Fixed, &opts).await;
        assert!(matches!(r, Err(MgmtError::Idle(_))), "{r:?}");
    }

    #[tokio::test]
    async fn served_over_plain_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve_tcp(listener, Arc::new(Fixed), MgmtOptions::default()));
        for _ in 0..2 {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"summary\r\nexit\r\n").await.unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).await.unwrap();
            assert_eq!(out, "[{\"status\":\"error\",\"ip\":\"192.0.2.9\"}]\r\n");
        }
        server.abort();
    }
}
