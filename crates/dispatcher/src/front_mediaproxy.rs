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
//! What it does not: decide anything about calls (the [`Router`] does).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

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

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(
    router: Arc<Router>,
    listener: UnixListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        tokio::spawn(serve_connection(
            Arc::clone(&router),
            stream,
            shutdown.clone(),
        ));
    }
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
) {
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        loop {
            match mediaproxy::parse_request(&buf, &limits) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Request(request, used)) => {
                    let reply = router.handle_mediaproxy(&request).await;
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                    buf.drain(..used.min(buf.len()));
                }
                Err(e) => {
                    tracing::warn!("dispatcher: MediaProxy front door: {e}");
                    if stream.write_all(mediaproxy::ERROR).await.is_err() {
                        return;
                    }
                    let Some(end) = end_of_request(&buf) else {
                        return;
                    };
                    buf.drain(..end);
                }
            }
        }
        let n = tokio::select! {
            _ = shutdown.changed() => return,
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
