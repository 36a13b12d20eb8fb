//! RADIUS accounting for the cluster (RFC 2866), as MediaProxy's `radius` accounting
//! module sends it (anchors c.4): one `Accounting-Request` with `Acct-Status-Type =
//! Interim-Update` (3, MediaProxy's "Update") per finished call.
//!
//! What it does:
//! * [`AcctRecord::from_session`] picks the attributes from MediaProxy's session
//!   statistics: `User-Name`, `Acct-Session-Id` (Call-ID), `Acct-Session-Time`,
//!   `Acct-Input-Octets`/`Acct-Output-Octets` (caller/callee bytes; the high 32 bits
//!   in `Acct-*-Gigawords`, RFC 2869, when a call passes 4 GiB), `Sip-From-Tag`,
//!   `Sip-To-Tag`, `NAS-IP-Address` (the relay address of the first stream;
//!   `NAS-IPv6-Address` for IPv6), `Sip-User-Agents`, `Sip-Applications`,
//!   `Media-Codecs`, `Media-Info` and `Acct-Delay-Time` (the post-dial delay, as
//!   MediaProxy uses it). Attribute numbers: the standard ones from RFC 2865/2866/2869
//!   and 3162; `Sip-To-Tag` 104 and `Sip-From-Tag` 105 as Debian's FreeRADIUS
//!   `dictionary.openser` numbers them; `Sip-User-Agents` 200, `Sip-Applications` 201,
//!   `Media-Codecs` 202, `Media-Info` 203 in the experimental range (RFC 2865 §5.26
//!   leaves 192-223 for it), since no dictionary Debian ships names them. The
//!   dictionary for FreeRADIUS is `config/radius/dictionary.mediagate`.
//! * [`encode_request`] writes the packet with its Request Authenticator
//!   (MD5 over the packet with a zero authenticator, then the shared secret, §3);
//!   [`check_response`] accepts only an `Accounting-Response` to that request whose
//!   Response Authenticator proves the secret (§3), rejecting everything else with the
//!   byte offset of the fault.
//! * [`Spool`]: records the server did not acknowledge, one JSON line each in a file
//!   under the state directory, resent oldest first; bounded in records (a full spool
//!   refuses new records and says so in the log, keeping the older ones).
//! * [`RadiusAccounting`] is the I/O shell: a task that sends each record with
//!   retries and doubling waits, spills to the spool when the server is away and
//!   resends the spool when it answers again (and on an interval).
//!
//! Values longer than an attribute holds (253 bytes) are cut, as MediaProxy cuts
//! them. Empty `Sip-To-Tag` and `Media-Info` are left out: RFC 2865 strings hold at
//! least one byte.
//!
//! What it does not: authentication, Status-Server, or more than one server.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read as _, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::session_stats::MediaProxySession;

/// RFC 2866 §3 packet codes.
const ACCOUNTING_REQUEST: u8 = 4;
const ACCOUNTING_RESPONSE: u8 = 5;
/// RFC 2865 §3: the largest packet.
pub const MAX_PACKET: usize = 4096;
const HEADER: usize = 20;
/// RFC 2865 §5: an attribute's value holds at most 253 bytes.
pub const MAX_VALUE: usize = 253;

/// Attribute numbers.
pub mod attr {
    /// RFC 2865.
    pub const USER_NAME: u8 = 1;
    /// RFC 2865.
    pub const NAS_IP_ADDRESS: u8 = 4;
    /// RFC 2866.
    pub const ACCT_STATUS_TYPE: u8 = 40;
    /// RFC 2866.
    pub const ACCT_DELAY_TIME: u8 = 41;
    /// RFC 2866.
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    /// RFC 2866.
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    /// RFC 2866.
    pub const ACCT_SESSION_ID: u8 = 44;
    /// RFC 2866.
    pub const ACCT_SESSION_TIME: u8 = 46;
    /// RFC 2869.
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    /// RFC 2869.
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    /// RFC 3162.
    pub const NAS_IPV6_ADDRESS: u8 = 95;
    /// Debian FreeRADIUS `dictionary.openser`.
    pub const SIP_TO_TAG: u8 = 104;
    /// Debian FreeRADIUS `dictionary.openser`.
    pub const SIP_FROM_TAG: u8 = 105;
    /// `config/radius/dictionary.mediagate`.
    pub const SIP_USER_AGENTS: u8 = 200;
    /// `config/radius/dictionary.mediagate`.
    pub const SIP_APPLICATIONS: u8 = 201;
    /// `config/radius/dictionary.mediagate`.
    pub const MEDIA_CODECS: u8 = 202;
    /// `config/radius/dictionary.mediagate`.
    pub const MEDIA_INFO: u8 = 203;
}

/// `Acct-Status-Type = Interim-Update`.
pub const STATUS_INTERIM_UPDATE: u32 = 3;

/// One attribute as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    /// Its number.
    pub code: u8,
    /// Its value, at most [`MAX_VALUE`] bytes.
    pub value: Vec<u8>,
}

impl Attribute {
    fn text(code: u8, text: &str) -> Self {
        // Cut on a character boundary so the value stays UTF-8.
        let mut end = text.len().min(MAX_VALUE);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            code,
            value: text.as_bytes()[..end].to_vec(),
        }
    }

    fn int(code: u8, n: u32) -> Self {
        Self {
            code,
            value: n.to_be_bytes().to_vec(),
        }
    }
}

/// One accounting record: its attributes in sending order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcctRecord {
    /// The attributes.
    pub attributes: Vec<Attribute>,
}

impl AcctRecord {
    /// The record MediaProxy sends for `session` (see the module docs); `user_name`
    /// is MediaProxy's `mediaproxy@default` unless configured otherwise.
    pub fn from_session(session: &MediaProxySession, user_name: &str) -> Self {
        let mut a = vec![
            Attribute::int(attr::ACCT_STATUS_TYPE, STATUS_INTERIM_UPDATE),
            Attribute::text(attr::USER_NAME, user_name),
            Attribute::text(attr::ACCT_SESSION_ID, &session.call_id),
            Attribute::int(
                attr::ACCT_SESSION_TIME,
                u32::try_from(session.duration).unwrap_or(u32::MAX),
            ),
        ];
        let sum = |f: fn(&crate::session_stats::MediaProxyStream) -> u64| {
            session
                .streams
                .iter()
                .map(f)
                .fold(0u64, u64::saturating_add)
        };
        for (octets, gigawords, total) in [
            (
                attr::ACCT_INPUT_OCTETS,
                attr::ACCT_INPUT_GIGAWORDS,
                sum(|s| s.caller_bytes),
            ),
            (
                attr::ACCT_OUTPUT_OCTETS,
                attr::ACCT_OUTPUT_GIGAWORDS,
                sum(|s| s.callee_bytes),
            ),
        ] {
            // The low and high 32 bits: the casts keep exactly those.
            #[allow(clippy::cast_possible_truncation)]
            a.push(Attribute::int(octets, total as u32));
            if total > u64::from(u32::MAX) {
                a.push(Attribute::int(
                    gigawords,
                    u32::try_from(total >> 32).unwrap_or(u32::MAX),
                ));
            }
        }
        a.push(Attribute::text(attr::SIP_FROM_TAG, &session.from_tag));
        if !session.to_tag.is_empty() {
            a.push(Attribute::text(attr::SIP_TO_TAG, &session.to_tag));
        }
        let relay_ip = session
            .streams
            .first()
            .and_then(|s| s.caller_local.parse::<SocketAddr>().ok())
            .map(|a| a.ip());
        match relay_ip {
            Some(IpAddr::V4(ip)) => a.push(Attribute {
                code: attr::NAS_IP_ADDRESS,
                value: ip.octets().to_vec(),
            }),
            Some(IpAddr::V6(ip)) => a.push(Attribute {
                code: attr::NAS_IPV6_ADDRESS,
                value: ip.octets().to_vec(),
            }),
            None => {}
        }
        a.push(Attribute::text(
            attr::SIP_USER_AGENTS,
            &format!("{}+{}", session.caller_ua, session.callee_ua),
        ));
        let applications: BTreeSet<&str> = session
            .streams
            .iter()
            .filter(|s| s.start_time != s.end_time)
            .map(|s| s.media_type.as_str())
            .collect();
        if !applications.is_empty() {
            let list: Vec<&str> = applications.into_iter().collect();
            a.push(Attribute::text(attr::SIP_APPLICATIONS, &list.join(", ")));
        }
        if !session.streams.is_empty() {
            let codecs: Vec<&str> = session
                .streams
                .iter()
                .map(|s| s.caller_codec.as_str())
                .collect();
            a.push(Attribute::text(attr::MEDIA_CODECS, &codecs.join(", ")));
        }
        // The relay does not take part in ICE, so MediaProxy's "ICE session" never
        // applies.
        if session.timed_out() {
            a.push(Attribute::text(attr::MEDIA_INFO, "timeout"));
        }
        if let Some(delay) = session.streams.iter().find_map(|s| s.post_dial_delay) {
            // Whole seconds, as MediaProxy's int(); the cast saturates.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            a.push(Attribute::int(attr::ACCT_DELAY_TIME, delay as u32));
        }
        Self { attributes: a }
    }
}

/// Why a record cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An attribute value over [`MAX_VALUE`] bytes.
    #[error("RADIUS attribute {code} holds {len} bytes, more than {MAX_VALUE}")]
    ValueTooLong {
        /// The attribute.
        code: u8,
        /// Its length.
        len: usize,
    },
    /// The packet would exceed [`MAX_PACKET`].
    #[error("RADIUS packet of {0} bytes exceeds {MAX_PACKET}")]
    PacketTooLong(usize),
}

/// An `Accounting-Request` with identifier `id` and `attributes`, authenticated with
/// `secret` (RFC 2866 §3).
pub fn encode_request(
    id: u8,
    attributes: &[Attribute],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut p = vec![ACCOUNTING_REQUEST, id, 0, 0];
    p.extend_from_slice(&[0; 16]);
    for a in attributes {
        if a.value.len() > MAX_VALUE {
            return Err(EncodeError::ValueTooLong {
                code: a.code,
                len: a.value.len(),
            });
        }
        p.push(a.code);
        // At most 255: checked above.
        #[allow(clippy::cast_possible_truncation)]
        p.push((a.value.len() + 2) as u8);
        p.extend_from_slice(&a.value);
    }
    if p.len() > MAX_PACKET {
        return Err(EncodeError::PacketTooLong(p.len()));
    }
    let len = u16::try_from(p.len()).map_err(|_| EncodeError::PacketTooLong(p.len()))?;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    let auth = Md5::new().chain_update(&p).chain_update(secret).finalize();
    p[4..20].copy_from_slice(&auth);
    Ok(p)
}

/// Why a datagram is not the answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Shorter than a header or than its Length field.
    #[error("RADIUS response truncated at byte {offset}")]
    Truncated {
        /// Where the bytes ran out.
        offset: usize,
    },
    /// A Length field outside 20..=4096.
    #[error("RADIUS response length field invalid (byte 2)")]
    BadLength,
    /// Not an `Accounting-Response`.
    #[error("RADIUS packet code {0} is not Accounting-Response (byte 0)")]
    NotAccountingResponse(u8),
    /// For another request.
    #[error("RADIUS response for identifier {got}, expected {expected} (byte 1)")]
    OtherIdentifier {
        /// Its identifier.
        got: u8,
        /// The request's.
        expected: u8,
    },
    /// An attribute with a length under 2 or past the packet's end.
    #[error("RADIUS response attribute malformed at byte {offset}")]
    BadAttribute {
        /// Where the attribute starts.
        offset: usize,
    },
    /// The Response Authenticator does not prove the shared secret.
    #[error("RADIUS response authenticator wrong (bytes 4-19): is the shared secret the same on both sides?")]
    BadAuthenticator,
}

/// Checks that `response` answers `request` (as [`encode_request`] wrote it) and
/// proves `secret` (RFC 2866 §3). Bytes past the Length field are ignored (RFC 2865
/// §3 calls them padding).
pub fn check_response(response: &[u8], request: &[u8], secret: &[u8]) -> Result<(), ResponseError> {
    if response.len() < HEADER {
        return Err(ResponseError::Truncated {
            offset: response.len(),
        });
    }
    let len = usize::from(u16::from_be_bytes([response[2], response[3]]));
    if !(HEADER..=MAX_PACKET).contains(&len) {
        return Err(ResponseError::BadLength);
    }
    if response.len() < len {
        return Err(ResponseError::Truncated {
            offset: response.len(),
        });
    }
    if response[0] != ACCOUNTING_RESPONSE {
        return Err(ResponseError::NotAccountingResponse(response[0]));
    }
    let expected = request.get(1).copied().unwrap_or_default();
    if response[1] != expected {
        return Err(ResponseError::OtherIdentifier {
            got: response[1],
            expected,
        });
    }
    let packet = &response[..len];
    let mut at = HEADER;
    while at < len {
        let alen = packet.get(at + 1).map_or(0, |&l| usize::from(l));
        if alen < 2 || at + alen > len {
            return Err(ResponseError::BadAttribute { offset: at });
        }
        at += alen;
    }
    let request_auth = request.get(4..20).ok_or(ResponseError::BadAuthenticator)?;
    let auth = Md5::new()
        .chain_update(&packet[..4])
        .chain_update(request_auth)
        .chain_update(&packet[HEADER..])
        .chain_update(secret)
        .finalize();
    if auth.as_slice() == &packet[4..20] {
        Ok(())
    } else {
        Err(ResponseError::BadAuthenticator)
    }
}

/// Longest spool line read back; longer lines (never written by us) are skipped.
const MAX_SPOOL_LINE: usize = 64 * 1024;

/// Records waiting for the server: a file of JSON lines, oldest first.
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    max_records: usize,
    len: usize,
}

/// The spool holds its maximum.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// Full: the record was not kept.
    #[error("RADIUS spool {0} is full; this record is lost")]
    Full(PathBuf),
    /// The file could not be written or read.
    #[error("RADIUS spool: {0}")]
    Io(#[from] io::Error),
}

impl Spool {
    /// Opens (or starts) the spool at `path`, counting what an earlier run left.
    pub fn open(path: PathBuf, max_records: usize) -> io::Result<Self> {
        let mut spool = Self {
            path,
            max_records,
            len: 0,
        };
        spool.len = spool.read()?.len();
        Ok(spool)
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `record`, durable before it returns.
    pub fn push(&mut self, record: &AcctRecord) -> Result<(), SpoolError> {
        if self.len >= self.max_records {
            return Err(SpoolError::Full(self.path.clone()));
        }
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()?;
        self.len += 1;
        Ok(())
    }

    /// Every waiting record, oldest first. Lines that do not parse (a torn last write)
    /// are skipped.
    pub fn read(&self) -> io::Result<Vec<AcctRecord>> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut reader = BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut reader)
                .take(MAX_SPOOL_LINE as u64 + 1)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') && n > MAX_SPOOL_LINE {
                // Skip the rest of an overlong line.
                reader.skip_until(b'\n')?;
                continue;
            }
            if let Ok(r) = serde_json::from_slice::<AcctRecord>(&line) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Forgets the oldest `sent` records (the server has them): the rest are written
    /// to a new file that replaces the old one in one rename.
    pub fn drop_front(&mut self, sent: usize) -> io::Result<()> {
        let rest: Vec<AcctRecord> = self.read()?.into_iter().skip(sent).collect();
        if rest.is_empty() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            let tmp = self.path.with_extension("tmp");
            let mut f = File::create(&tmp)?;
            for r in &rest {
                let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
                line.push(b'\n');
                f.write_all(&line)?;
            }
            f.sync_data()?;
            std::fs::rename(&tmp, &self.path)?;
        }
        self.len = rest.len();
        Ok(())
    }
}

/// Where and how to send accounting.
#[derive(Debug, Clone)]
pub struct RadiusOptions {
    /// The accounting server (port 1813 by convention).
    pub server: SocketAddr,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// `User-Name` of every record (MediaProxy: `mediaproxy@default`).
    pub user_name: String,
    /// The first try's wait for an answer; each retry waits twice the last.
    pub timeout: Duration,
    /// Tries after the first before a record goes to the spool.
    pub retries: u32,
    /// The spool file (under the state directory).
    pub spool_path: PathBuf,
    /// Most records the spool keeps.
    pub spool_max: usize,
    /// How often the spool is retried while the server is away.
    pub resend_interval: Duration,
}

impl RadiusOptions {
    /// MediaProxy's defaults for `server` and `secret`, the spool in `state_dir`.
    pub fn new(
        server: SocketAddr,
        secret: impl Into<Vec<u8>>,
        state_dir: &std::path::Path,
    ) -> Self {
        Self {
            server,
            secret: secret.into(),
            user_name: "mediaproxy@default".to_owned(),
            timeout: Duration::from_secs(1),
            retries: 2,
            spool_path: state_dir.join("radius-spool.jsonl"),
            spool_max: 20_000,
            resend_interval: Duration::from_secs(30),
        }
    }
}

/// How many records the sending task has in hand before [`RadiusAccounting::account`]
/// reports it busy.
const QUEUE: usize = 16 * 1024;

/// The accounting client: hand it finished calls, it delivers them.
#[derive(Debug, Clone)]
pub struct RadiusAccounting {
    queue: mpsc::Sender<AcctRecord>,
    user_name: String,
}

/// The sending task's queue is full (the server is away and the spool is slow).
#[derive(Debug, thiserror::Error)]
#[error("RADIUS accounting queue full; record for {0} not accounted")]
pub struct QueueFull(pub String);

impl RadiusAccounting {
    /// Opens the spool and starts the sending task on the current runtime.
    pub async fn start(options: RadiusOptions) -> io::Result<(Self, tokio::task::JoinHandle<()>)> {
        let bind: SocketAddr = match options.server {
            SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(options.server).await?;
        let spool = Spool::open(options.spool_path.clone(), options.spool_max)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let user_name = options.user_name.clone();
        let sender = Sender {
            socket,
            options,
            spool,
            next_id: 0,
        };
        let task = tokio::spawn(sender.run(rx));
        Ok((
            Self {
                queue: tx,
                user_name,
            },
            task,
        ))
    }

    /// Queues the accounting record of a finished call.
    pub fn account(&self, session: &MediaProxySession) -> Result<(), QueueFull> {
        let record = AcctRecord::from_session(session, &self.user_name);
        self.queue
            .try_send(record)
            .map_err(|_| QueueFull(session.call_id.clone()))
    }
}

struct Sender {
    socket: UdpSocket,
    options: RadiusOptions,
    spool: Spool,
    next_id: u8,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<AcctRecord>) {
        let mut tick = tokio::time::interval(self.options.resend_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                record = rx.recv() => {
                    let Some(record) = record else { return };
                    self.deliver(record).await;
                }
                _ = tick.tick() => {
                    if !self.spool.is_empty() {
                        self.resend_spool().await;
                    }
                }
            }
        }
    }

    /// Sends `record`, or spools it. While older records wait in the spool the new
    /// one joins them, so the server sees calls in the order they ended.
    async fn deliver(&mut self, record: AcctRecord) {
        if !self.spool.is_empty() {
            self.spill(&record);
            return;
        }
        if !self.send(&record).await {
            tracing::warn!(server = %self.options.server, "RADIUS server does not answer; spooling accounting");
            self.spill(&record);
        }
    }

    fn spill(&mut self, record: &AcctRecord) {
        if let Err(e) = self.spool.push(record) {
            tracing::error!(error = %e, "RADIUS accounting record lost");
        }
    }

    async fn resend_spool(&mut self) {
        let records = match self.spool.read() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading the RADIUS spool");
                return;
            }
        };
        let mut sent = 0;
        for r in &records {
            if !self.send(r).await {
                break;
            }
            sent += 1;
        }
        if sent > 0 {
            if let Err(e) = self.spool.drop_front(sent) {
                tracing::error!(error = %e, "rewriting the RADIUS spool");
            } else {
                tracing::info!(sent, left = self.spool.len(), "RADIUS spool resent");
            }
        }
    }

    /// One record through its tries; true once the server acknowledged it.
    async fn send(&mut self, record: &AcctRecord) -> bool {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let packet = match encode_request(id, &record.attributes, &self.options.secret) {
            Ok(p) => p,
            Err(e) => {
                // Cannot happen for records from_session built; a hand-edited spool
                // line could. Counted as delivered so it does not block the rest.
                tracing::error!(error = %e, "RADIUS record cannot be encoded; dropped");
                return true;
            }
        };
        let mut wait = self.options.timeout;
        let mut buf = vec![0u8; MAX_PACKET];
        for _ in 0..=self.options.retries {
            // A refused send (ICMP port unreachable from an earlier try) is the same
            // as no answer: try again after the wait.
            let _ = self.socket.send(&packet).await;
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                let Ok(read) = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await
                else {
                    break;
                };
                let Ok(n) = read else {
                    // ECONNREFUSED from the connected socket: the server is down.
                    tokio::time::sleep_until(deadline).await;
                    break;
                };
                match check_response(&buf[..n], &packet, &self.options.secret) {
                    Ok(()) => return true,
                    Err(e) => tracing::debug!(error = %e, "RADIUS datagram ignored"),
                }
            }
            wait = wait.saturating_mul(2);
        }
        false
    }
}

#[cfg(test)]
#[path = "radius_tests.rs"]
mod tests;
