//! A transparent TCP tap: listens on a free loopback port, forwards each connection to a
//! target and records both directions with timestamps.
//!
//! Put it between a client and a server to capture real protocol bytes (that is how
//! `testdata/rtsp/` is made) or to count bytes through a proxy. It forwards half-closes
//! (EOF in one direction shuts down writing on the other side) so request/response
//! protocols behave as without it. Recording is bounded per direction
//! ([`TapOptions::record_limit`]); counting is not.
//!
//! What it does not do: TLS, UDP, modify or delay bytes (beyond one copy), or parse
//! anything. Timestamps come from the host clock: this is I/O code, not a protocol core.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Options of a [`Tap`].
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// Bytes recorded per connection and direction; later bytes are forwarded and counted
    /// but not kept.
    pub record_limit: usize,
    /// How long to wait for the target to accept each connection.
    pub connect_timeout: Duration,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            record_limit: 64 * 1024 * 1024,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Bytes read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapChunk {
    /// Time since the tap started.
    pub at: Duration,
    /// The bytes, as one `read` returned them.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Direction {
    chunks: Vec<TapChunk>,
    recorded: usize,
    total: u64,
    closed: bool,
}

#[derive(Debug)]
struct ConnState {
    id: usize,
    peer: SocketAddr,
    accepted_at: Duration,
    c2s: Mutex<Direction>,
    s2c: Mutex<Direction>,
    connect_error: Mutex<Option<String>>,
    sockets: Mutex<Vec<TcpStream>>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    stop: AtomicBool,
    conns: Mutex<Vec<Arc<ConnState>>>,
    changed: Condvar,
    options: TapOptions,
    target: SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A snapshot of one tapped connection.
#[derive(Debug, Clone)]
pub struct TapConnection {
    /// 0-based, in accept order.
    pub id: usize,
    /// The client's address.
    pub peer: SocketAddr,
    /// When it was accepted, since the tap started.
    pub accepted_at: Duration,
    /// Client → server bytes as read (up to the record limit).
    pub client_to_server: Vec<TapChunk>,
    /// Server → client bytes as read (up to the record limit).
    pub server_to_client: Vec<TapChunk>,
    /// All client → server bytes forwarded, recorded or not.
    pub c2s_bytes: u64,
    /// All server → client bytes forwarded, recorded or not.
    pub s2c_bytes: u64,
    /// Both directions reached end of file (or failed).
    pub closed: bool,
    /// Why the target could not be reached, if it could not.
    pub connect_error: Option<String>,
}

impl TapConnection {
    /// The recorded client → server bytes, concatenated.
    pub fn c2s(&self) -> Vec<u8> {
        self.client_to_server
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .collect()
    }

    /// The recorded server → client bytes, concatenated.
    pub fn s2c(&self) -> Vec<u8> {
        self.server_to_client
            .iter()
            .flat_map(|c| c.data.iter().copied())
            .collect()
    }
}

impl ConnState {
    fn snapshot(&self) -> TapConnection {
        let c2s = lock(&self.c2s);
        let s2c = lock(&self.s2c);
        TapConnection {
            id: self.id,
            peer: self.peer,
            accepted_at: self.accepted_at,
            client_to_server: c2s.chunks.clone(),
            server_to_client: s2c.chunks.clone(),
            c2s_bytes: c2s.total,
            s2c_bytes: s2c.total,
            closed: c2s.closed && s2c.closed,
            connect_error: lock(&self.connect_error).clone(),
        }
    }
}

/// A running tap. Stops (closing every tapped connection) on [`Tap::stop`] or drop.
#[derive(Debug)]
pub struct Tap {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

impl Tap {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> io::Result<Tap> {
        Self::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            target,
            TapOptions::default(),
        )
    }

    /// Listens on `listen` (port 0 = pick) and forwards to `target`.
    pub fn start_with(
        listen: SocketAddr,
        target: SocketAddr,
        options: TapOptions,
    ) -> io::Result<Tap> {
        let listener = TcpListener::bind(listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Inner {
            start: Instant::now(),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            options,
            target,
        });
        let accept_inner = inner.clone();
        let accept = thread::Builder::new()
            .name(format!("tap-{}", addr.port()))
            .spawn(move || accept_loop(listener, accept_inner))?;
        Ok(Tap {
            addr,
            inner,
            accept: Some(accept),
        })
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.inner.target
    }

    /// A snapshot of every connection so far, in accept order.
    pub fn connections(&self) -> Vec<TapConnection> {
        lock(&self.inner.conns)
            .iter()
            .map(|c| c.snapshot())
            .collect()
    }

    /// Total (client → server, server → client) bytes forwarded so far.
    pub fn bytes(&self) -> (u64, u64) {
        lock(&self.inner.conns).iter().fold((0, 0), |(a, b), c| {
            (a + lock(&c.c2s).total, b + lock(&c.s2c).total)
        })
    }

    /// Waits until at least `n` connections were accepted; false on timeout.
    pub fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        self.wait(timeout, |conns| conns.len() >= n)
    }

    /// Waits until every accepted connection has closed in both directions; false on
    /// timeout.
    pub fn wait_all_closed(&self, timeout: Duration) -> bool {
        self.wait(timeout, |conns| {
            conns
                .iter()
                .all(|c| lock(&c.c2s).closed && lock(&c.s2c).closed)
        })
    }

    fn wait(&self, timeout: Duration, mut done: impl FnMut(&[Arc<ConnState>]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut conns = lock(&self.inner.conns);
        loop {
            if done(&conns) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            conns = self
                .inner
                .changed
                .wait_timeout(conns, left.min(Duration::from_millis(50)))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Stops listening, closes every tapped connection and returns what was recorded.
    pub fn stop(mut self) -> Vec<TapConnection> {
        self.shutdown();
        self.connections()
    }

    fn shutdown(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        for c in lock(&self.inner.conns).iter() {
            for s in lock(&c.sockets).iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut next_id = 0;
    while !inner.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, peer)) => {
                let id = next_id;
                next_id += 1;
                let conn = Arc::new(ConnState {
                    id,
                    peer,
                    accepted_at: inner.start.elapsed(),
                    c2s: Mutex::default(),
                    s2c: Mutex::default(),
                    connect_error: Mutex::new(None),
                    sockets: Mutex::new(Vec::new()),
                });
                lock(&inner.conns).push(conn.clone());
                inner.changed.notify_all();
                let inner2 = inner.clone();
                let spawned = thread::Builder::new()
                    .name(format!("tap-conn-{id}"))
                    .spawn(move || serve(client, conn, inner2));
                if let Err(e) = spawned {
                    eprintln!("tap: cannot start a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("tap: accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn close_both(conn: &ConnState, inner: &Inner) {
    lock(&conn.c2s).closed = true;
    lock(&conn.s2c).closed = true;
    inner.changed.notify_all();
}

fn serve(client: TcpStream, conn: Arc<ConnState>, inner: Arc<Inner>) {
    let server = match TcpStream::connect_timeout(&inner.target, inner.options.connect_timeout) {
        Ok(s) => s,
        Err(e) => {
            *lock(&conn.connect_error) = Some(format!("connect to {}: {e}", inner.target));
            let _ = client.shutdown(Shutdown::Both);
            close_both(&conn, &inner);
            return;
        }
    };
    let setup = || -> io::Result<(TcpStream, TcpStream, TcpStream, TcpStream)> {
        client.set_nonblocking(false)?;
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        // (client reader, server writer, server reader, client writer)
        Ok((
            client.try_clone()?,
            server.try_clone()?,
            server.try_clone()?,
            client.try_clone()?,
        ))
    };
    let (c_read, s_write, s_read, c_write) = match setup() {
        Ok(x) => x,
        Err(e) => {
            *lock(&conn.connect_error) = Some(format!("socket setup: {e}"));
            close_both(&conn, &inner);
            return;
        }
    };
    lock(&conn.sockets).extend([client, server]);
    // A stop that raced with connect: make sure these sockets are closed too.
    if inner.stop.load(Ordering::SeqCst) {
        for s in lock(&conn.sockets).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    let conn2 = conn.clone();
    let inner2 = inner.clone();
    let up = thread::Builder::new()
        .name(format!("tap-c2s-{}", conn.id))
        .spawn(move || pump(c_read, s_write, &conn2, &inner2, true));
    pump(s_read, c_write, &conn, &inner, false);
    if let Ok(h) = up {
        let _ = h.join();
    } else {
        close_both(&conn, &inner);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, conn: &ConnState, inner: &Inner, c2s: bool) {
    let dir = if c2s { &conn.c2s } else { &conn.s2c };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let data = &buf[..n];
        {
            let mut d = lock(dir);
            d.total = d.total.saturating_add(n as u64);
            let room = inner.options.record_limit.saturating_sub(d.recorded);
            if room > 0 {
                let keep = &data[..n.min(room)];
                d.recorded += keep.len();
                d.chunks.push(TapChunk {
                    at: inner.start.elapsed(),
                    data: keep.to_vec(),
                });
            }
        }
        if to.write_all(data).is_err() {
            let _ = from.shutdown(Shutdown::Read);
            break;
        }
    }
    // Pass the half-close on, so the other side sees EOF exactly as without the tap.
    let _ = to.shutdown(Shutdown::Write);
    lock(dir).closed = true;
    inner.changed.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client socket whose reads fail after 5 s instead of hanging the test run.
    fn connect(addr: SocketAddr) -> TcpStream {
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    }

    /// An echo server that upper-cases, answers until EOF, then closes.
    fn upper_echo() -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = l.accept().unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n].to_ascii_uppercase()).unwrap();
                }
            }
        });
        (addr, h)
    }

    #[test]
    fn forwards_and_records_both_directions() {
        let (target, server) = upper_echo();
        let tap = Tap::start(target).unwrap();
        for msg in [&b"hello"[..], b"again"] {
            let mut c = connect(tap.addr());
            c.write_all(msg).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            assert_eq!(got, msg.to_ascii_uppercase());
        }
        assert!(tap.wait_all_closed(Duration::from_secs(5)));
        server.join().unwrap();
        assert_eq!(tap.bytes(), (10, 10));
        let conns = tap.stop();
        assert_eq!(conns.len(), 2);
        assert_eq!(conns[0].c2s(), b"hello");
        assert_eq!(conns[0].s2c(), b"HELLO");
        assert_eq!(conns[1].c2s(), b"again");
        assert!(conns[0].closed && conns[1].closed);
        assert!(conns[0].accepted_at <= conns[1].accepted_at);
        let first = &conns[0].client_to_server[0];
        let reply = &conns[0].server_to_client[0];
        assert!(first.at <= reply.at);
    }

    #[test]
    fn record_limit_bounds_memory_but_not_forwarding() {
        let (target, server) = upper_echo();
        let tap = Tap::start_with(
            "127.0.0.1:0".parse().unwrap(),
            target,
            TapOptions {
                record_limit: 3,
                ..TapOptions::default()
            },
        )
        .unwrap();
        let mut c = connect(tap.addr());
        c.write_all(b"abcdef").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"ABCDEF");
        assert!(tap.wait_all_closed(Duration::from_secs(5)));
        let conns = tap.connections();
        assert_eq!(conns[0].c2s(), b"abc");
        assert_eq!(conns[0].c2s_bytes, 6);
        // Let the echo server finish its second accept.
        drop(TcpStream::connect(tap.addr()).unwrap());
        assert!(tap.wait_connections(2, Duration::from_secs(5)));
        assert!(tap.wait_all_closed(Duration::from_secs(5)));
        server.join().unwrap();
    }

    #[test]
    fn unreachable_target_is_reported() {
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let tap = Tap::start(dead).unwrap();
        let mut c = connect(tap.addr());
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(got.is_empty());
        assert!(tap.wait_all_closed(Duration::from_secs(5)));
        let conns = tap.stop();
        let err = conns[0].connect_error.clone().unwrap();
        assert!(err.starts_with(&format!("connect to {dead}: ")), "{err}");
    }

    #[test]
    fn stop_closes_open_connections() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = l.local_addr().unwrap();
        let tap = Tap::start(target).unwrap();
        let mut c = TcpStream::connect(tap.addr()).unwrap();
        let (_held, _) = l.accept().unwrap();
        assert!(tap.wait_connections(1, Duration::from_secs(5)));
        let started = Instant::now();
        let conns = tap.stop();
        assert_eq!(conns.len(), 1);
        let mut got = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.read_to_end(&mut got);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
