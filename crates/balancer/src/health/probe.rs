//! The active checks, as one-shot async probes on tokio: TCP connect, RTSP `OPTIONS`
//! or `DESCRIBE` with an expected status (vTM's `rtsp` monitor; keepalived and HAProxy
//! have none), and the agent port (connect, read one line, parse it).
//!
//! Each probe opens its own connection, is bounded by one timeout for all of it
//! (connect, write, read), reads at most what its parser allows, and closes. RTSP
//! requests are built and answers matched by `mediagate_rtsp`'s client session and
//! decoder, the same code the edge uses towards its origins.
//!
//! What it does not: decide up or down (`state.rs` counts results), or retry.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::Duration;

use mediagate_rtsp::{ClientSession, Decoder, Item, Limits, Method, ResponseDisposition};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::agent::{parse_agent_reply, AgentReply, AgentReplyError, MAX_AGENT_LINE};

/// The `User-Agent` of RTSP checks, so origin logs tell checks from viewers.
pub const CHECK_USER_AGENT: &str = "mediagate-balancer-check";

/// Which statuses pass an RTSP check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectStatus(pub Vec<RangeInclusive<u16>>);

impl ExpectStatus {
    pub fn accepts(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

impl Default for ExpectStatus {
    /// Any 2xx.
    fn default() -> Self {
        ExpectStatus(vec![200..=299])
    }
}

/// What an active check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// The back end accepts a TCP connection.
    Tcp,
    /// `OPTIONS url` answers with an expected status.
    RtspOptions { url: String, expect: ExpectStatus },
    /// `DESCRIBE url` answers with an expected status (the content exists).
    RtspDescribe { url: String, expect: ExpectStatus },
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("i/o: {0}")]
    Io(std::io::Error),
    #[error("connection closed before a full answer")]
    Closed,
    #[error("RTSP answer {code}, expected {expected:?}")]
    Status {
        code: u16,
        expected: Vec<RangeInclusive<u16>>,
    },
    #[error("the back end answered something that is not an RTSP response: {0}")]
    Garbage(String),
    #[error("agent: {0}")]
    Agent(#[from] AgentReplyError),
}

/// Runs one check of `kind` against `addr`, all of it within `timeout`.
pub async fn probe(
    addr: SocketAddr,
    kind: &CheckKind,
    timeout: Duration,
) -> Result<(), ProbeError> {
    tokio::time::timeout(timeout, probe_inner(addr, kind))
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
}

async fn probe_inner(addr: SocketAddr, kind: &CheckKind) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(ProbeError::Connect)?;
    match kind {
        CheckKind::Tcp => Ok(()),
        CheckKind::RtspOptions { url, expect } => {
            rtsp_request(&mut stream, Method::Options, url, expect).await
        }
        CheckKind::RtspDescribe { url, expect } => {
            rtsp_request(&mut stream, Method::Describe, url, expect).await
        }
    }
}

/// Small limits: a check's answer is a status line, a few headers and at most an SDP.
fn check_limits() -> Limits {
    Limits {
        max_line: 4096,
        max_head: 16 * 1024,
        max_headers: 64,
        max_body: 64 * 1024,
    }
}

async fn rtsp_request(
    stream: &mut TcpStream,
    method: Method,
    url: &str,
    expect: &ExpectStatus,
) -> Result<(), ProbeError> {
    let mut session = ClientSession::new(CHECK_USER_AGENT, None);
    let mut req = session.request(method.clone(), url);
    if method == Method::Describe {
        req.headers.append("Accept", "application/sdp");
    }
    // No credentials, so no Digest challenge is ever answered and no cnonce is used.
    let wire = session
        .send(req, "")
        .map_err(|e| ProbeError::Garbage(e.to_string()))?;
    stream
        .write_all(&wire.to_bytes())
        .await
        .map_err(ProbeError::Io)?;
    let mut decoder = Decoder::new(check_limits());
    let mut buf = [0u8; 4096];
    loop {
        while let Some(item) = decoder
            .next_item()
            .map_err(|e| ProbeError::Garbage(e.to_string()))?
        {
            let Item::Response(resp) = item else {
                // Server requests and interleaved frames are not answers.
                continue;
            };
            match session
                .handle_response(resp, "")
                .map_err(|e| ProbeError::Garbage(e.to_string()))?
            {
                ResponseDisposition::Final(resp) => {
                    let code = resp.status.as_u16();
                    let _ = stream.shutdown().await;
                    return if expect.accepts(code) {
                        Ok(())
                    } else {
                        Err(ProbeError::Status {
                            code,
                            expected: expect.0.clone(),
                        })
                    };
                }
                ResponseDisposition::Resend(_) | ResponseDisposition::Unsolicited(_) => {}
            }
        }
        let n = stream.read(&mut buf).await.map_err(ProbeError::Io)?;
        if n == 0 {
            return Err(ProbeError::Closed);
        }
        decoder.extend_from_slice(&buf[..n]);
    }
}

/// Connects to an agent port and reads its one-line reply (up to the line end, the
/// connection's end, or [`MAX_AGENT_LINE`] + 1 bytes), within `timeout`.
pub async fn query_agent(addr: SocketAddr, timeout: Duration) -> Result<AgentReply, ProbeError> {
    tokio::time::timeout(timeout, async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(ProbeError::Connect)?;
        let mut line = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        loop {
            let n = stream.read(&mut buf).await.map_err(ProbeError::Io)?;
            if n == 0 {
                break;
            }
            line.extend_from_slice(&buf[..n]);
            if line.contains(&b'\n') || line.len() > MAX_AGENT_LINE {
                break;
            }
        }
        if line.is_empty() {
            return Err(ProbeError::Closed);
        }
        Ok(parse_agent_reply(&line)?)
    })
    .await
    .map_err(|_| ProbeError::Timeout(timeout))?
}
