//! One viewer's RTSP control connection (RFC 2326 §10, §10.12): the I/O shell around
//! `mediagate_rtsp::ClientSession`, which numbers requests, tracks the Session, matches
//! responses by CSeq, answers one `401` challenge with the URL's credentials and times
//! keep-alives. Here: the socket, and interleaved `$` frames handed to a sink the
//! moment they are decoded, whether we are waiting for a response or just streaming.
//!
//! Every wait has a deadline; nothing here blocks past it. What it does not: decide
//! the session's steps (see `viewer`), or interpret the frames.

use std::net::SocketAddr;

use bytes::Bytes;
use mediagate_rtsp::parse::{Decoder, Limits};
use mediagate_rtsp::{ClientSession, Item, Method, Request, Response, ResponseDisposition};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes asked of the socket per read: several video frames of interleaved data, so a
/// busy TCP viewer costs few wake-ups.
const READ_CHUNK: usize = 64 * 1024;

/// Where interleaved frames go: `(channel, payload, arrival)`.
pub(super) trait FrameSink: Send {
    fn frame(&mut self, channel: u8, payload: &Bytes, at: std::time::Instant);
}

/// Why a request or the stream failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ConnError {
    Timeout,
    Closed,
    Io(String),
    Protocol(String),
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Timeout => f.write_str("no answer before the deadline"),
            ConnError::Closed => f.write_str("the server closed the connection"),
            ConnError::Io(e) => write!(f, "I/O error: {e}"),
            ConnError::Protocol(e) => write!(f, "invalid RTSP from the server: {e}"),
        }
    }
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Io(e.to_string())
    }
}

/// An RTSP client connection.
pub(super) struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    core: ClientSession,
    /// Arrival time of the bytes being decoded.
    read_at: std::time::Instant,
    /// Requests the server sent us (ignored).
    pub server_requests: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("session", &self.core.session_id())
            .finish_non_exhaustive()
    }
}

fn auth_error(e: mediagate_rtsp::ClientSessionError) -> ConnError {
    ConnError::Protocol(e.to_string())
}

impl Conn {
    /// Connects to `addr` before `deadline`.
    pub(super) async fn connect(
        addr: SocketAddr,
        credentials: Option<(String, String)>,
        deadline: Instant,
    ) -> Result<Conn, ConnError> {
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            decoder: Decoder::new(Limits::default()),
            core: ClientSession::new(
                format!("mediagate-loadgen/{}", env!("CARGO_PKG_VERSION")),
                credentials,
            ),
            read_at: std::time::Instant::now(),
            server_requests: 0,
        })
    }

    /// Our address on the connection (UDP ports are bound on the same address).
    pub(super) fn local_addr(&self) -> Result<SocketAddr, ConnError> {
        Ok(self.stream.local_addr()?)
    }

    /// A request with our `User-Agent`.
    pub(super) fn request(&self, method: Method, uri: &str) -> Request {
        self.core.request(method, uri)
    }

    /// Responses to requests sent without waiting (keep-alives) that were not 2xx.
    pub(super) fn late_failures(&self) -> u64 {
        self.core.late_failures()
    }

    /// Forgets the session after its TEARDOWN, so the next requests start another.
    pub(super) fn end_session(&mut self) {
        self.core.end_session();
    }

    /// Starts timing keep-alives from the session timeout the server stated.
    pub(super) fn start_keepalives(&mut self, now: Instant) {
        self.core.start_keepalives(now.into_std());
    }

    /// When the next keep-alive is due, once started.
    pub(super) fn next_keepalive(&self) -> Option<Instant> {
        self.core.poll_timeout().map(Instant::from_std)
    }

    /// True (and the next one scheduled) when a keep-alive is due at `now`.
    pub(super) fn keepalive_due(&mut self, now: Instant) -> bool {
        self.core.handle_timeout(now.into_std())
    }

    /// A Digest `cnonce` from the OS's randomness (RFC 7616 §3.4: unpredictable).
    fn fresh_cnonce(&mut self) -> Result<String, ConnError> {
        let n = getrandom::u64().map_err(std::io::Error::from)?;
        Ok(format!("{n:016x}"))
    }

    async fn write(&mut self, req: &Request) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(req.size_hint());
        req.write_to(&mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Sends `req` and waits until `deadline` for its response, feeding frames that
    /// arrive meanwhile to `sink`. A `401` is answered once if we have credentials.
    pub(super) async fn call(
        &mut self,
        req: Request,
        deadline: Instant,
        sink: &mut (dyn FrameSink + Send),
    ) -> Result<Response, ConnError> {
        let cnonce = self.fresh_cnonce()?;
        let mut wire = self.core.send(req, &cnonce).map_err(auth_error)?;
        loop {
            self.write(&wire).await?;
            match self.response_to(deadline, sink).await? {
                ResponseDisposition::Resend(again) => wire = again,
                ResponseDisposition::Final(r) | ResponseDisposition::Unsolicited(r) => {
                    return Ok(r)
                }
            }
        }
    }

    /// Sends `req` without waiting; a non-2xx answer is counted in
    /// [`Self::late_failures`] when it arrives.
    pub(super) async fn send(&mut self, req: Request) -> Result<(), ConnError> {
        let cnonce = self.fresh_cnonce()?;
        let wire = self.core.send_no_wait(req, &cnonce).map_err(auth_error)?;
        self.write(&wire).await
    }

    async fn response_to(
        &mut self,
        deadline: Instant,
        sink: &mut (dyn FrameSink + Send),
    ) -> Result<ResponseDisposition, ConnError> {
        loop {
            if let Some(r) = self.drain(sink)? {
                return Ok(r);
            }
            if !self.read_before(deadline).await? {
                return Err(ConnError::Timeout);
            }
        }
    }

    /// Reads and dispatches until `until`. Returns when the time comes; an error when
    /// the connection fails or closes first.
    pub(super) async fn pump_until(
        &mut self,
        until: Instant,
        sink: &mut (dyn FrameSink + Send),
    ) -> Result<(), ConnError> {
        loop {
            self.drain(sink)?;
            if !self.read_before(until).await? {
                return Ok(());
            }
        }
    }

    /// Decodes everything buffered. Frames go to `sink`; the answer to the awaited
    /// request (if any) is returned as soon as it is decoded, leaving later bytes
    /// buffered. Other responses are counted by the core and dropped.
    fn drain(
        &mut self,
        sink: &mut (dyn FrameSink + Send),
    ) -> Result<Option<ResponseDisposition>, ConnError> {
        loop {
            let item = self
                .decoder
                .next_item()
                .map_err(|e| ConnError::Protocol(e.to_string()))?;
            match item {
                None => return Ok(None),
                Some(Item::Frame(f)) => sink.frame(f.channel(), f.payload(), self.read_at),
                Some(Item::Response(r)) => {
                    let cnonce = self.fresh_cnonce()?;
                    match self.core.handle_response(r, &cnonce).map_err(auth_error)? {
                        ResponseDisposition::Unsolicited(_) => {}
                        answer => return Ok(Some(answer)),
                    }
                }
                Some(Item::Request(_)) => self.server_requests += 1,
            }
        }
    }

    /// One read into the decoder before `deadline`: `Ok(false)` when the deadline
    /// passed first.
    async fn read_before(&mut self, deadline: Instant) -> Result<bool, ConnError> {
        let buf = self.decoder.buffer_mut();
        buf.reserve(READ_CHUNK);
        match tokio::time::timeout_at(deadline, self.stream.read_buf(buf)).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => Err(ConnError::Closed),
            Ok(Ok(_)) => {
                self.read_at = std::time::Instant::now();
                Ok(true)
            }
            Ok(Err(e)) => Err(e.into()),
        }
    }
}

/// A sink for connections that expect no interleaved data; counts what comes anyway.
#[derive(Debug, Default)]
pub(super) struct CountingSink {
    pub frames: u64,
}

impl FrameSink for CountingSink {
    fn frame(&mut self, _: u8, _: &Bytes, _: std::time::Instant) {
        self.frames += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagate_rtsp::StatusCode;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// A scripted server: reads a request, sends back `replies[i]` verbatim.
    async fn scripted(replies: Vec<Vec<u8>>) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            for r in replies {
                let mut d = Decoder::new(Limits::default());
                let req = loop {
                    if let Some(Item::Request(req)) = d.next_item().unwrap() {
                        break req;
                    }
                    let b = d.buffer_mut();
                    b.reserve(4096);
                    if s.read_buf(b).await.unwrap() == 0 {
                        return seen;
                    }
                };
                seen.push(format!(
                    "{} {} auth={}",
                    req.method,
                    req.cseq().unwrap_or(0),
                    req.headers.get("Authorization").is_some()
                ));
                s.write_all(&r).await.unwrap();
            }
            // Stay connected until the client hangs up.
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
            seen
        });
        (addr, h)
    }

    #[derive(Default)]
    struct Frames(Vec<(u8, Vec<u8>)>);
    impl FrameSink for Frames {
        fn frame(&mut self, ch: u8, p: &Bytes, _: std::time::Instant) {
            self.0.push((ch, p.to_vec()));
        }
    }

    #[tokio::test]
    async fn frames_before_the_response_reach_the_sink() {
        let mut reply = vec![b'$', 0, 0, 3, 1, 2, 3, b'$', 1, 0, 1, 9];
        reply.extend_from_slice(
            b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nSession: abc\r\n\r\n$\x02\x00\x01\x07",
        );
        let (addr, server) = scripted(vec![reply]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut c = Conn::connect(addr, None, deadline).await.unwrap();
        let mut sink = Frames::default();
        let req = c.request(Method::Play, "rtsp://h/x");
        let resp = c.call(req, deadline, &mut sink).await.unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(sink.0, vec![(0, vec![1, 2, 3]), (1, vec![9])]);
        // The frame after the response is still buffered and comes out next.
        c.pump_until(Instant::now() + Duration::from_millis(50), &mut sink)
            .await
            .unwrap();
        assert_eq!(sink.0.last(), Some(&(2, vec![7])));
        drop(c);
        assert_eq!(server.await.unwrap(), vec!["PLAY 1 auth=false"]);
    }

    #[tokio::test]
    async fn a_response_dribbled_byte_by_byte_is_decoded_whole() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let reply = b"$\x00\x00\x02ab RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nv=0";
        let reply = [&reply[..4], &reply[4..6], &reply[7..]].concat();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = Vec::with_capacity(4096);
            s.read_buf(&mut buf).await.unwrap();
            for b in &reply {
                s.write_all(std::slice::from_ref(b)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = s.read_to_end(&mut buf).await;
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut c = Conn::connect(addr, None, deadline).await.unwrap();
        let mut sink = Frames::default();
        let req = c.request(Method::Describe, "rtsp://h/x");
        let resp = c.call(req, deadline, &mut sink).await.unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(&resp.body[..], b"v=0");
        assert_eq!(sink.0, vec![(0, b"ab".to_vec())]);
        drop(c);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_basic_challenge_is_answered_once() {
        let challenge =
            b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Basic realm=\"r\"\r\n\r\n";
        let ok = b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n";
        let (addr, server) = scripted(vec![challenge.to_vec(), ok.to_vec()]).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let creds = Some(("u".to_owned(), "p".to_owned()));
        let mut c = Conn::connect(addr, creds, deadline).await.unwrap();
        let req = c.request(Method::Options, "rtsp://h/x");
        let resp = c
            .call(req, deadline, &mut CountingSink::default())
            .await
            .unwrap();
        assert_eq!(resp.status, StatusCode::OK);
        drop(c);
        assert_eq!(
            server.await.unwrap(),
            vec!["OPTIONS 1 auth=false", "OPTIONS 2 auth=true"]
        );
    }

    #[tokio::test]
    async fn silence_times_out_and_close_is_reported() {
        // A server that reads the request and hangs up.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = Vec::with_capacity(4096);
            s.read_buf(&mut buf).await.unwrap();
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut c = Conn::connect(addr, None, deadline).await.unwrap();
        let req = c.request(Method::Options, "rtsp://h/x");
        let err = c
            .call(req, deadline, &mut CountingSink::default())
            .await
            .unwrap_err();
        assert_eq!(err, ConnError::Closed);
        server.await.unwrap();
        // A server that never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut c = Conn::connect(addr, None, deadline).await.unwrap();
        let req = c.request(Method::Options, "rtsp://h/x");
        assert_eq!(
            c.call(req, deadline, &mut CountingSink::default())
                .await
                .unwrap_err(),
            ConnError::Timeout
        );
    }
}
