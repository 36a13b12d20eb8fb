//! Link messages over an async byte stream (the TLS connection), for both ends:
//! a cancel-safe reader, a writer, and the hello exchange with version negotiation.
//!
//! What it does not: decide anything about the messages after `hello`.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::{FrameReader, Hello, Message, Side, WireError};

/// Why a link ends.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not link frames.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The peer closed the connection.
    #[error("the connection closed (the peer stopped or the network failed)")]
    Closed,
    /// The peer broke the protocol or refused us; the text says how.
    #[error("{0}")]
    Protocol(String),
}

/// Reads messages; [`MessageReader::next`] is cancel-safe (its only wait is a read).
#[derive(Debug)]
pub struct MessageReader<R> {
    io: R,
    frames: FrameReader,
    buf: Vec<u8>,
    /// A message decoded by [`MessageReader::next_buffered_if`] and not wanted there:
    /// the next one [`MessageReader::next`] returns.
    held: Option<Message>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Reads from `io`.
    pub fn new(io: R) -> Self {
        Self {
            io,
            frames: FrameReader::new(),
            buf: vec![0; 16 * 1024],
            held: None,
        }
    }

    /// The next message; [`LinkError::Closed`] at the end of the stream.
    pub async fn next(&mut self) -> Result<Message, LinkError> {
        if let Some(m) = self.held.take() {
            return Ok(m);
        }
        loop {
            if let Some(m) = self.frames.next_message()? {
                return Ok(m);
            }
            let n = match self.io.read(&mut self.buf).await {
                Ok(n) => n,
                // rustls's word for a peer gone without close_notify: a killed
                // process or a lost network, which the log should say plainly.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Err(LinkError::Closed);
            }
            self.frames.push(&self.buf[..n]);
        }
    }

    /// The next message if it has been read already (no I/O) and `want` takes it;
    /// otherwise `None`, and a message `want` refused is what [`MessageReader::next`]
    /// returns next. Lets a peer handle a burst of messages before it writes.
    pub fn next_buffered_if(
        &mut self,
        want: impl FnOnce(&Message) -> bool,
    ) -> Result<Option<Message>, LinkError> {
        let next = match self.held.take() {
            Some(m) => m,
            None => match self.frames.next_message()? {
                Some(m) => m,
                None => return Ok(None),
            },
        };
        if want(&next) {
            Ok(Some(next))
        } else {
            self.held = Some(next);
            Ok(None)
        }
    }
}

/// Writes frames already encoded (several messages, say) in one write, and flushes.
pub async fn send_encoded<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &[u8],
) -> Result<(), LinkError> {
    io.write_all(frames).await?;
    io.flush().await?;
    Ok(())
}

/// Writes one message and flushes it.
pub async fn send<W: AsyncWrite + Unpin>(io: &mut W, message: &Message) -> Result<(), LinkError> {
    send_encoded(io, &message.encode()?).await
}

/// Sends our hello, reads the peer's within `wait`, and checks that it comes from
/// `expect` and speaks our major version; otherwise tells the peer why (`refuse`) and
/// fails with that reason.
pub async fn exchange_hello<R, W>(
    reader: &mut MessageReader<R>,
    writer: &mut W,
    ours: &Hello,
    expect: Side,
    wait: Duration,
) -> Result<Hello, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    send(writer, &Message::Hello(ours.clone())).await?;
    let first = tokio::time::timeout(wait, reader.next())
        .await
        .map_err(|_| LinkError::Protocol(format!("no hello within {} s", wait.as_secs())))??;
    let theirs = match first {
        Message::Hello(h) => h,
        Message::Refuse { reason } => {
            return Err(LinkError::Protocol(format!(
                "the peer refused the link: {reason}"
            )))
        }
        other => {
            return Err(LinkError::Protocol(format!(
                "the peer sent {} before hello",
                other.kind()
            )))
        }
    };
    let problem = if theirs.side != expect {
        Some(format!(
            "the peer says it is a {}, not a {expect}",
            theirs.side
        ))
    } else {
        theirs.check_compatible().err()
    };
    if let Some(reason) = problem {
        // Best effort: the peer may be gone already.
        let _ = send(
            writer,
            &Message::Refuse {
                reason: reason.clone(),
            },
        )
        .await;
        return Err(LinkError::Protocol(reason));
    }
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_sides_refuse_another_major_version_and_say_why() {
        let (a, b) = tokio::io::duplex(4096);
        let (ar, mut aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let mut future = Hello::ours(Side::Relay, "relay-from-the-future");
        future.version = (2, 0);
        let relay = async {
            // This code accepts the 1.x hello (it compares with its own version); a
            // real 2.x relay would not. What matters is what it reads next.
            let mut r = MessageReader::new(ar);
            exchange_hello(
                &mut r,
                &mut aw,
                &future,
                Side::Dispatcher,
                Duration::from_secs(5),
            )
            .await
            .unwrap();
            r.next().await.unwrap()
        };
        let dispatcher = async {
            let mut r = MessageReader::new(br);
            let ours = Hello::ours(Side::Dispatcher, "d");
            exchange_hello(&mut r, &mut bw, &ours, Side::Relay, Duration::from_secs(5)).await
        };
        let (relay, dispatcher) = tokio::join!(relay, dispatcher);
        let d = dispatcher.unwrap_err().to_string();
        assert!(d.contains("peer speaks link protocol 2.0"), "{d}");
        let Message::Refuse { reason } = relay else {
            panic!("expected a refusal, got {relay:?}");
        };
        assert!(reason.contains("this side speaks 1."), "{reason}");
    }

    #[tokio::test]
    async fn buffered_messages_are_taken_without_waiting_and_a_refused_one_comes_next() {
        let (a, mut b) = tokio::io::duplex(4096);
        let mut bytes = Vec::new();
        for m in [
            Message::Ping { seq: 1 },
            Message::Ping { seq: 2 },
            Message::Pong { seq: 3 },
            Message::Ping { seq: 4 },
        ] {
            m.encode_into(&mut bytes).unwrap();
        }
        b.write_all(&bytes).await.unwrap();
        let mut r = MessageReader::new(a);
        let is_ping = |m: &Message| matches!(m, Message::Ping { .. });
        assert_eq!(
            r.next_buffered_if(is_ping).unwrap(),
            None,
            "nothing read yet"
        );
        assert_eq!(r.next().await.unwrap(), Message::Ping { seq: 1 });
        assert_eq!(
            r.next_buffered_if(is_ping).unwrap(),
            Some(Message::Ping { seq: 2 })
        );
        assert_eq!(r.next_buffered_if(is_ping).unwrap(), None);
        // The pong was refused above: kept, not lost, and still refused.
        assert_eq!(r.next_buffered_if(is_ping).unwrap(), None);
        assert_eq!(r.next().await.unwrap(), Message::Pong { seq: 3 });
        assert_eq!(
            r.next_buffered_if(is_ping).unwrap(),
            Some(Message::Ping { seq: 4 })
        );
        drop(b);
        assert!(matches!(r.next().await, Err(LinkError::Closed)));
    }

    #[tokio::test]
    async fn a_relay_talking_to_a_relay_is_refused() {
        let (a, b) = tokio::io::duplex(4096);
        let (ar, mut aw) = tokio::io::split(a);
        let (br, mut bw) = tokio::io::split(b);
        let one = async {
            let mut r = MessageReader::new(ar);
            let h = Hello::ours(Side::Relay, "r1");
            exchange_hello(
                &mut r,
                &mut aw,
                &h,
                Side::Dispatcher,
                Duration::from_secs(5),
            )
            .await
        };
        let two = async {
            let mut r = MessageReader::new(br);
            let h = Hello::ours(Side::Relay, "r2");
            exchange_hello(
                &mut r,
                &mut bw,
                &h,
                Side::Dispatcher,
                Duration::from_secs(5),
            )
            .await
        };
        let (one, _) = tokio::join!(one, two);
        assert!(one.unwrap_err().to_string().contains("not a dispatcher"));
    }
}
