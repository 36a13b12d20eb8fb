//! The session-sync stream between two balancers (sans-IO): JSON lines, one message a
//! line, the first line a `hello` carrying the protocol version.
//!
//! ```text
//! {"hello":{"version":1,"node":"lb-a"}}
//! {"add":{"service":"rtsp","id":"9f…","backend":0,"backend_addr":"10.0.0.1:8554",…}}
//! … one add per session …
//! {"synced":{}}                        the full snapshot is through
//! {"add":{…}}                          a new or changed session
//! {"remove":{"service":"rtsp","id":"9f…"}}
//! ```
//!
//! What it does: defines the records ([`SessionRecord`], [`PairRecord`]) and messages
//! ([`Message`]), writes them ([`encode`]), and reads them back from a byte stream in
//! any split ([`LineDecoder`]): a line longer than [`MAX_LINE`] or that is not a known
//! message is an error carrying its offset in the stream, never a panic; a `hello` of
//! another version is refused, so an upgraded node never misreads an older one.
//!
//! What it does not: sockets, deciding what to send (`super::run` diffs the table),
//! or bounding how many sessions arrive (the standby's store caps them).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The version this code writes and reads.
pub(crate) const VERSION: u32 = 1;

/// The longest line accepted: a session of 16 streams with every address written out
/// takes under 4 KiB.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// One relayed stream of a session (`relay` mode): the balancer's two port pairs and
/// who is expected on each side, as the relay was started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PairRecord {
    /// The balancer's RTP port facing the back end, and facing the client.
    pub(crate) sides: [SocketAddr; 2],
    /// The back end's RTP endpoint as it signalled it, and its IP.
    pub(crate) backend_endpoint: Option<SocketAddr>,
    pub(crate) backend_ip: Option<IpAddr>,
    /// The client's RTP endpoint as it signalled it, and the control connection's IP.
    pub(crate) client_endpoint: Option<SocketAddr>,
    pub(crate) client_ip: Option<IpAddr>,
    /// Where each side's media really came from (latched), when it has sent.
    pub(crate) latched: [Option<SocketAddr>; 2],
}

/// One session of the active balancer's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    /// The service's configured name.
    pub(crate) service: String,
    /// The balancer's session ID, as clients know it.
    pub(crate) id: String,
    /// The back end's index in the service's list, and its address (the standby
    /// checks both, so a differently configured peer never misroutes).
    pub(crate) backend: u32,
    pub(crate) backend_addr: SocketAddr,
    /// The session ID the back end minted.
    pub(crate) server_id: String,
    /// The session's timeout in milliseconds.
    pub(crate) timeout_ms: u64,
    pub(crate) streams: u32,
    /// The client's address, when the session relays media (the control
    /// connection's IP).
    pub(crate) client: Option<IpAddr>,
    #[serde(default)]
    pub(crate) pairs: Vec<PairRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) version: u32,
    /// Who is speaking, for logs.
    pub(crate) node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Remove {
    pub(crate) service: String,
    pub(crate) id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Synced {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Message {
    Hello(Hello),
    Add(SessionRecord),
    Remove(Remove),
    Synced(Synced),
}

/// Appends `message` as one line to `out`.
pub(crate) fn encode(message: &Message, out: &mut Vec<u8>) {
    // Serializing these types cannot fail: no maps with non-string keys, no
    // non-finite floats.
    if serde_json::to_writer(&mut *out, message).is_ok() {
        out.push(b'\n');
    }
}

/// Why the stream cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("line at byte {offset} is longer than {MAX_LINE} bytes")]
    TooLong { offset: u64 },
    #[error("line at byte {offset} is not a sync message: {reason}")]
    Invalid { offset: u64, reason: String },
    #[error("the peer speaks sync version {got}, this node {VERSION}; upgrade both")]
    Version { got: u32 },
    #[error("the stream did not start with hello")]
    NoHello,
}

/// Reads messages from a byte stream cut anywhere.
#[derive(Debug, Default)]
pub(crate) struct LineDecoder {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    hello: bool,
}

impl LineDecoder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed. After an error
    /// the stream is unusable (the caller closes it).
    pub(crate) fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > MAX_LINE {
                return Err(DecodeError::TooLong {
                    offset: self.offset,
                });
            }
            return Ok(None);
        };
        let offset = self.offset;
        if end > MAX_LINE {
            return Err(DecodeError::TooLong { offset });
        }
        let parsed = serde_json::from_slice::<Message>(&self.buf[..end]);
        self.buf.drain(..=end);
        self.offset += end as u64 + 1;
        let message = parsed.map_err(|e| DecodeError::Invalid {
            offset,
            reason: e.to_string(),
        })?;
        match (&message, self.hello) {
            (Message::Hello(h), false) if h.version == VERSION => self.hello = true,
            (Message::Hello(h), false) => return Err(DecodeError::Version { got: h.version }),
            (Message::Hello(_), true) => {
                return Err(DecodeError::Invalid {
                    offset,
                    reason: "a second hello".to_owned(),
                })
            }
            (_, false) => return Err(DecodeError::NoHello),
            (_, true) => {}
        }
        Ok(Some(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hello() -> Message {
        Message::Hello(Hello {
            version: VERSION,
            node: "lb-a".to_owned(),
        })
    }

    fn record(n: u32) -> SessionRecord {
        SessionRecord {
            service: "rtsp".to_owned(),
            id: format!("{n:016x}"),
            backend: n % 3,
            backend_addr: "10.0.0.1:8554".parse().unwrap(),
            server_id: format!("srv{n}"),
            timeout_ms: 60_000,
            streams: 2,
            client: Some("192.0.2.7".parse().unwrap()),
            pairs: vec![PairRecord {
                sides: [
                    "0.0.0.0:40000".parse().unwrap(),
                    "0.0.0.0:40002".parse().unwrap(),
                ],
                backend_endpoint: Some("10.0.0.1:5000".parse().unwrap()),
                backend_ip: Some("10.0.0.1".parse().unwrap()),
                client_endpoint: Some("192.0.2.7:6000".parse().unwrap()),
                client_ip: Some("192.0.2.7".parse().unwrap()),
                latched: [None, Some("192.0.2.7:31000".parse().unwrap())],
            }],
        }
    }

    fn stream(messages: &[Message]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            encode(m, &mut out);
        }
        out
    }

    fn decode_all(bytes: &[u8], chunk: usize) -> Result<Vec<Message>, DecodeError> {
        let mut d = LineDecoder::new();
        let mut got = Vec::new();
        for part in bytes.chunks(chunk.max(1)) {
            d.push(part);
            while let Some(m) = d.next_message()? {
                got.push(m);
            }
        }
        Ok(got)
    }

    #[test]
    fn a_snapshot_and_changes_read_back_byte_by_byte() {
        let messages = vec![
            hello(),
            Message::Add(record(1)),
            Message::Add(record(2)),
            Message::Synced(Synced {}),
            Message::Remove(Remove {
                service: "rtsp".to_owned(),
                id: record(1).id,
            }),
        ];
        let bytes = stream(&messages);
        assert_eq!(decode_all(&bytes, 1).unwrap(), messages);
        assert_eq!(decode_all(&bytes, bytes.len()).unwrap(), messages);
    }

    #[test]
    fn the_stream_must_open_with_this_version_s_hello() {
        let add_first = stream(&[Message::Add(record(1))]);
        assert_eq!(decode_all(&add_first, 64), Err(DecodeError::NoHello));
        let newer = stream(&[Message::Hello(Hello {
            version: VERSION + 1,
            node: "x".to_owned(),
        })]);
        assert_eq!(
            decode_all(&newer, 64),
            Err(DecodeError::Version { got: VERSION + 1 })
        );
        let twice = stream(&[hello(), hello()]);
        assert!(matches!(
            decode_all(&twice, 64),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn garbage_and_long_lines_are_errors_with_their_offset() {
        let mut bytes = stream(&[hello()]);
        let at = bytes.len() as u64;
        bytes.extend_from_slice(b"{\"add\":{\"service\":1}}\n");
        assert!(matches!(
            decode_all(&bytes, 7),
            Err(DecodeError::Invalid { offset, .. }) if offset == at
        ));
        let mut long = stream(&[hello()]);
        long.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert_eq!(
            decode_all(&long, 4096),
            Err(DecodeError::TooLong { offset: at })
        );
        let mut unknown = stream(&[hello()]);
        unknown.extend_from_slice(b"{\"promote\":{}}\n");
        assert!(decode_all(&unknown, 3).is_err());
    }

    proptest! {
        #[test]
        fn any_split_reads_the_same(n in 1u32..20, chunk in 1usize..300) {
            let mut messages = vec![hello()];
            messages.extend((0..n).map(|i| Message::Add(record(i))));
            messages.push(Message::Synced(Synced {}));
            let bytes = stream(&messages);
            prop_assert_eq!(decode_all(&bytes, chunk).unwrap(), messages);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut with_hello = stream(&[hello()]);
            with_hello.extend_from_slice(&bytes);
            let _ = decode_all(&with_hello, 13);
            let _ = decode_all(&bytes, 5);
        }
    }
}
