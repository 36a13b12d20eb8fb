//! The MediaProxy front door: the `mediaproxy` module of Kamailio or OpenSIPS connects
//! to a UNIX stream socket and sends `update`/`remove` requests
//! ([`crate::mediaproxy`]); each gets its one-line reply, in order.
//!
//! What it does: creates the socket's parent directory if missing, replaces a stale
//! socket file left by a previous process, and sets the socket's mode to 0660 (the
//! proxy's user shares the dispatcher's group). A request the parser refuses gets
//! `error`; the connection then goes on after the request's blank line, or closes when
//! that cannot be found (an over-long line): the module reconnects.
//!
//! Bounds, so one misbehaving local client cannot starve the proxy's own connections:
//! a request must arrive whole within [`FrontLimits::stall`] of its first byte (a
//! client that sends half a request and stops is closed, with a log line); an idle
//! connection between requests has no time limit, since the module keeps its
//! connection open across calls; a reply the client does not take within the same
//! time closes the connection; at most [`FrontLimits::max_connections`] connections
//! are served at once, and one beyond that is closed at once, with a log line.
//!
//! What it does not: decide anything about calls (the [`Router`] does).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::mediaproxy::{self, Limits, Parsed};
use crate::router::Router;

/// Binds the socket at `path` as described in the module docs.
pub(crate) fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way; remove it or choose another path",
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// The front door's bounds on its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrontLimits {
    /// How long a request may take from its first byte to its blank line.
    pub(crate) stall: Duration,
    /// Most connections served at once.
    pub(crate) max_connections: usize,
}

impl Default for FrontLimits {
    fn default() -> Self {
        // The module writes a request in one go and waits for the reply with its own
        // time-out of a few seconds, so a request still incomplete after 10 s is not
        // coming. Kamailio opens one connection per worker process: 1024 leaves room
        // for any sensible number of workers on one host.
        Self {
            stall: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(
    router: Arc<Router>,
    listener: UnixListener,
    shutdown: watch::Receiver<bool>,
) {
    serve_with(router, listener, shutdown, FrontLimits::default()).await;
}

/// [`serve`] with chosen bounds.
pub(crate) async fn serve_with(
    router: Arc<Router>,
    listener: UnixListener,
    mut shutdown: watch::Receiver<bool>,
    limits: FrontLimits,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // One log line per episode of being full, not one per refused connection.
    let mut full_logged = false;
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            if !full_logged {
                tracing::warn!(
                    "dispatcher: MediaProxy front door: {} connections already open; closing new ones until one ends",
                    limits.max_connections
                );
                full_logged = true;
            }
            drop(stream);
            continue;
        };
        full_logged = false;
        tokio::spawn(serve_connection(
            Arc::clone(&router),
            stream,
            shutdown.clone(),
            limits.stall,
            permit,
        ));
    }
}

/// Writes a reply; false when the connection failed or the client has not taken it
/// within `limit` (it sends requests and never reads: its slot is given back).
async fn reply_within(stream: &mut UnixStream, reply: &[u8], limit: Duration) -> bool {
    match tokio::time::timeout(limit, stream.write_all(reply)).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!(
                "dispatcher: MediaProxy front door: closing a connection that has not read its replies for {} ms",
                limit.as_millis()
            );
            false
        }
    }
}

/// Whether `buf` holds the start of a request (blank lines between requests do not
/// count).
fn request_started(buf: &[u8]) -> bool {
    buf.iter().any(|b| !b.is_ascii_whitespace())
}

/// The end of the first request in `buf` (after its blank line), if present.
fn end_of_request(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' {
            let line = buf.get(line_start..i).unwrap_or_default();
            if (line.is_empty() || line == b"\r") && line_start > 0 {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

async fn serve_connection(
    router: Arc<Router>,
    mut stream: UnixStream,
    mut shutdown: watch::Receiver<bool>,
    stall: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    // When the request now in `buf` must be complete.
    let mut due: Option<Instant> = None;
    loop {
        loop {
            match mediaproxy::parse_request(&buf, &limits) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Request(request, used)) => {
                    let reply = router.handle_mediaproxy(&request).await;
                    if !reply_within(&mut stream, &reply, stall).await {
                        return;
                    }
                    buf.drain(..used.min(buf.len()));
                    due = None;
                }
                Err(e) => {
                    tracing::warn!("dispatcher: MediaProxy front door: {e}");
                    if !reply_within(&mut stream, mediaproxy::ERROR, stall).await {
                        return;
                    }
                    let Some(end) = end_of_request(&buf) else {
                        return;
                    };
                    buf.drain(..end);
                    due = None;
                }
            }
        }
        if !request_started(&buf) {
            due = None;
        } else if due.is_none() {
            due = Some(Instant::now() + stall);
        }
        let stalled = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            _ = shutdown.changed() => return,
            () = stalled => {
                tracing::warn!(
                    "dispatcher: MediaProxy front door: closing a connection whose request stayed incomplete for {} ms ({} bytes received)",
                    stall.as_millis(),
                    buf.len()
                );
                return;
            }
            r = stream.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_blank_line_that_ends_a_request() {
        assert_eq!(
            end_of_request(b"remove\r\ncall_id x\r\n\r\nupdate"),
            Some(21)
        );
        assert_eq!(end_of_request(b"remove\ncall_id x\n\nnext"), Some(18));
        assert_eq!(end_of_request(b"remove\r\ncall_id x\r\n"), None);
    }
}
