//! The L4 TCP proxy: one listener, each accepted connection joined to a back end.
//!
//! Per connection: pick ([`Picker`]), connect with a timeout (a failure is reported
//! through [`Picker::connect_failed`] and the next pick, avoiding that back end, is
//! tried once), write a PROXY v2 header if configured, then copy both ways until both
//! sides have closed. Copying uses `splice(2)` through a pipe per direction, so payload
//! never enters userspace; where the kernel refuses splice, that direction copies
//! through a buffer instead. A half-close (FIN from one side) is passed on as a
//! `shutdown(SHUT_WR)` to the other while the other direction keeps flowing.
//!
//! Bounds: at most `max_connections` at once (more are accepted and closed at once, so
//! they fail fast rather than wait in the backlog); a connection with no byte in
//! either direction for `idle_timeout` is closed, and every connection to a back end
//! closes at once when that back end goes down ([`BackendCounters::close_connections`],
//! from health checks), rather than hanging on a dead peer until TCP gives up. Stopping: [`ServiceHandle::stop`]
//! closes the listener, gives running connections a grace period, then closes them.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::splice::{self, Pipe};
use super::{BackendPort, Picker, ServiceCounters, ServiceHandle, StopRx};
use crate::backend::BackendId;
use crate::l4::BackendCounters;
use crate::proxy_v2::{Header, Transport};

/// How one TCP service behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpConfig {
    /// Longest wait for a back end's connect before trying the next pick.
    pub connect_timeout: Duration,
    /// A connection idle both ways this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; more are refused.
    pub max_connections: usize,
    /// Send a PROXY v2 header with the client's address before any payload.
    pub proxy_v2: bool,
    /// Copy with `splice(2)` where the kernel allows (else always a userspace copy).
    pub splice: bool,
    pub backend_port: BackendPort,
}

impl Default for TcpConfig {
    /// 3 s connect, 5 min idle (HAProxy's common `timeout client`/`server` for TCP
    /// services), 10,000 connections, no PROXY header, splice on.
    fn default() -> TcpConfig {
        TcpConfig {
            connect_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(300),
            max_connections: 10_000,
            proxy_v2: false,
            splice: true,
            backend_port: BackendPort::FromPicker,
        }
    }
}

/// Starts the service on `listener` (already bound: the caller chooses the address
/// and socket options). Must be called inside a tokio runtime.
pub fn spawn(
    listener: TcpListener,
    config: TcpConfig,
    picker: Arc<dyn Picker>,
    counters: Arc<ServiceCounters>,
) -> io::Result<ServiceHandle> {
    let local = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(None);
    let task = tokio::spawn(accept_loop(
        listener,
        Arc::new(config),
        picker,
        counters.clone(),
        stop_rx,
    ));
    Ok(ServiceHandle::new(local, counters, stop_tx, task))
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<TcpConfig>,
    picker: Arc<dyn Picker>,
    counters: Arc<ServiceCounters>,
    mut stop: StopRx,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => {
                let (sock, peer) = match r {
                    Ok(a) => a,
                    Err(_) => {
                        // Out of descriptors or the like: back off instead of spinning;
                        // running connections closing will make room.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                while conns.try_join_next().is_some() {}
                if conns.len() >= config.max_connections {
                    counters.refused_full.fetch_add(1, Relaxed);
                    drop(sock);
                    continue;
                }
                counters.accepted.fetch_add(1, Relaxed);
                conns.spawn(connection(sock, peer, config.clone(), picker.clone(), counters.clone()));
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let grace = stop.borrow().unwrap_or_default();
    let _ = tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    conns.shutdown().await;
}

/// Ends a connected flow's accounting however its task ends (aborted included).
struct FlowGuard {
    picker: Arc<dyn Picker>,
    client: SocketAddr,
    id: BackendId,
    counters: Arc<BackendCounters>,
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        self.counters.flow_ended();
        self.picker.flow_ended(self.client.ip(), self.id);
    }
}

async fn connection(
    client: TcpStream,
    peer: SocketAddr,
    config: Arc<TcpConfig>,
    picker: Arc<dyn Picker>,
    counters: Arc<ServiceCounters>,
) {
    let Ok(local) = client.local_addr() else {
        return;
    };
    let Some((id, mut backend)) = connect_backend(peer, local, &config, &*picker, &counters).await
    else {
        counters.no_backend.fetch_add(1, Relaxed);
        return;
    };
    let bc = counters.backend(id);
    let mut backend_down = bc.down_signal();
    bc.flow_started();
    let _guard = FlowGuard {
        picker: picker.clone(),
        client: peer,
        id,
        counters: bc.clone(),
    };
    if config.proxy_v2 {
        let header = Header::proxy(Transport::Stream, peer, local);
        let Ok(bytes) = header.to_bytes() else {
            return;
        };
        if backend.write_all(&bytes).await.is_err() {
            return;
        }
    }
    // Small writes (RTSP-like control traffic) go out at once; bulk flows fill
    // segments anyway.
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let activity = Activity::new();
    let up = one_way(
        &client,
        &backend,
        config.splice,
        &bc.bytes_to_backend,
        &counters,
        &activity,
    );
    let down = one_way(
        &backend,
        &client,
        config.splice,
        &bc.bytes_to_client,
        &counters,
        &activity,
    );
    tokio::select! {
        _ = async { tokio::try_join!(up, down) } => {}
        _ = activity.idle(config.idle_timeout) => {
            counters.idle_closed.fetch_add(1, Relaxed);
        }
        // The sender lives in `bc`, held here: `changed` cannot fail meanwhile.
        Ok(()) = backend_down.changed() => {}
    }
}

/// Picks and connects, trying a second pick once when the first connect fails.
async fn connect_backend(
    peer: SocketAddr,
    local: SocketAddr,
    config: &TcpConfig,
    picker: &dyn Picker,
    counters: &ServiceCounters,
) -> Option<(BackendId, TcpStream)> {
    let mut avoid = None;
    for _ in 0..2 {
        let (id, addr) = picker.pick(peer.ip(), avoid)?;
        let addr = config.backend_port.apply(addr, local);
        match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => return Some((id, s)),
            _ => {
                counters.backend(id).connect_failures.fetch_add(1, Relaxed);
                picker.connect_failed(id);
                picker.flow_ended(peer.ip(), id);
                avoid = Some(id);
            }
        }
    }
    None
}

/// The last time a byte moved either way, for the idle timeout.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Relaxed);
    }

    /// Resolves once nothing moved for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let deadline = self.start + Duration::from_millis(self.last_ms.load(Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Copies `src` → `dst` until `src`'s end of stream, then half-closes `dst`.
async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    use_splice: bool,
    bytes: &AtomicU64,
    counters: &ServiceCounters,
    activity: &Activity,
) -> io::Result<()> {
    if use_splice {
        if let Ok(pipe) = Pipe::new() {
            match splice_loop(src, dst, &pipe, bytes, counters, activity).await {
                Err(e) if splice::is_unsupported(&e) => {}
                r => return r,
            }
        }
    }
    copy_loop(src, dst, bytes, counters, activity).await
}

/// Half-closes `dst`'s sending side; the peer may have gone already.
fn shutdown_write(dst: &TcpStream) {
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
}

/// The zero-copy loop. Errors with an "unsupported" kind only before the first byte
/// moved, so the caller can fall back to [`copy_loop`] without losing data.
async fn splice_loop(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    bytes: &AtomicU64,
    counters: &ServiceCounters,
    activity: &Activity,
) -> io::Result<()> {
    let mut moved_any = false;
    loop {
        // The pipe is empty here: an EAGAIN can only mean `src` has nothing to read.
        let n = loop {
            src.readable().await?;
            match src.try_io(Interest::READABLE, || {
                pipe.fill_from(src.as_fd(), pipe.capacity())
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if moved_any && splice::is_unsupported(&e) => {
                    return Err(io::Error::other(e));
                }
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            shutdown_write(dst);
            return Ok(());
        }
        moved_any = true;
        let mut left = n;
        // The pipe holds `left` bytes: an EAGAIN can only mean `dst` is full.
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || pipe.drain_to(dst.as_fd(), left)) {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(io::Error::new(e.kind(), e)),
            }
        }
        bytes.fetch_add(n as u64, Relaxed);
        counters.bytes_spliced.fetch_add(n as u64, Relaxed);
        activity.touch();
    }
}

/// The userspace fallback: read into a buffer, write it out.
async fn copy_loop(
    src: &TcpStream,
    dst: &TcpStream,
    bytes: &AtomicU64,
    counters: &ServiceCounters,
    activity: &Activity,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            shutdown_write(dst);
            return Ok(());
        }
        let mut off = 0;
        while off < n {
            dst.writable().await?;
            match dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        bytes.fetch_add(n as u64, Relaxed);
        counters.bytes_copied.fetch_add(n as u64, Relaxed);
        activity.touch();
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
