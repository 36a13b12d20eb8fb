//! The outgoing side of one viewer's TCP connection: RTSP responses and interleaved
//! media (RFC 2326 §10.12) in one ordered queue, drained by one writer task.
//!
//! Why one queue: a PLAY response must reach the viewer before the first media frame,
//! and both travel on the same byte stream. Why bounded: a viewer that stops reading
//! must not make the edge hold its media; when the media backlog is full, [`ConnOut::
//! push_media`] refuses and the hub skips that viewer to the next keyframe. Control
//! responses are never refused (the reader stops reading requests while too many
//! responses wait, which bounds them).
//!
//! The writer takes everything queued at once and writes it with vectored writes (a
//! 4-byte interleave header and the shared packet per frame, no copy of the payload),
//! so a busy viewer costs few system calls.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// One thing to write.
#[derive(Debug, Clone)]
enum Out {
    Control(Bytes),
    Media { header: [u8; 4], payload: Bytes },
}

impl Out {
    fn parts(&self) -> (&[u8], &[u8]) {
        match self {
            Out::Control(b) => (b, &[]),
            Out::Media { header, payload } => (header, payload),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Out>,
    media_queued: usize,
    media_bytes: usize,
    control_queued: usize,
    closed: bool,
}

/// Limits of one connection's backlog.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    pub max_media_packets: usize,
    pub max_media_bytes: usize,
}

impl Default for Backlog {
    fn default() -> Self {
        // About two seconds of a 4 Mbit/s stream.
        Self {
            max_media_packets: 1024,
            max_media_bytes: 1 << 20,
        }
    }
}

/// Cheap-to-clone handle shared by the connection's reader, the hubs feeding it and
/// its writer task.
#[derive(Debug, Clone)]
pub struct ConnOut {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    notify: Notify,
    limits: Backlog,
}

/// Responses queued above this make the reader pause (see module docs).
pub const MAX_CONTROL_QUEUED: usize = 64;

/// Frames written per vectored write (two slices each; Linux's IOV_MAX is 1024).
const MAX_FRAMES_PER_WRITE: usize = 256;

impl ConnOut {
    pub fn new(limits: Backlog) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                notify: Notify::new(),
                limits,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue inconsistent (each
        // operation is a few field updates), so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an RTSP response (or other control bytes). Returns false once closed.
    pub fn push_control(&self, bytes: Bytes) -> bool {
        let mut st = self.state();
        if st.closed {
            return false;
        }
        st.control_queued += 1;
        st.queue.push_back(Out::Control(bytes));
        drop(st);
        self.shared.notify.notify_one();
        true
    }

    /// Queues one interleaved frame. Returns false when the media backlog is full or
    /// the connection is closed: the caller treats the viewer as lagging.
    pub fn push_media(&self, channel: u8, payload: &Bytes) -> bool {
        let Ok(len) = u16::try_from(payload.len()) else {
            return false;
        };
        let mut st = self.state();
        if st.closed
            || st.media_queued >= self.shared.limits.max_media_packets
            || st.media_bytes + payload.len() > self.shared.limits.max_media_bytes
        {
            return false;
        }
        st.media_queued += 1;
        st.media_bytes += payload.len();
        let [hi, lo] = len.to_be_bytes();
        st.queue.push_back(Out::Media {
            header: [b'$', channel, hi, lo],
            payload: payload.clone(),
        });
        let was_idle = st.queue.len() == 1;
        drop(st);
        if was_idle {
            self.shared.notify.notify_one();
        }
        true
    }

    /// Responses waiting to be written (the reader pauses above [`MAX_CONTROL_QUEUED`]).
    pub fn control_backlog(&self) -> usize {
        self.state().control_queued
    }

    /// Media packets waiting.
    pub fn media_backlog(&self) -> (usize, usize) {
        let st = self.state();
        (st.media_queued, st.media_bytes)
    }

    /// Stops accepting anything; the writer finishes what is queued, then ends.
    pub fn close(&self) {
        self.state().closed = true;
        self.shared.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Writes queued items until closed and drained, or until a write fails.
    pub async fn run_writer<W: AsyncWrite + Unpin>(&self, mut w: W) -> std::io::Result<()> {
        let mut batch: Vec<Out> = Vec::new();
        loop {
            let closed = {
                let mut st = self.state();
                let n = st.queue.len().min(MAX_FRAMES_PER_WRITE);
                batch.extend(st.queue.drain(..n));
                for o in &batch {
                    match o {
                        Out::Control(_) => st.control_queued -= 1,
                        Out::Media { payload, .. } => {
                            st.media_queued -= 1;
                            st.media_bytes -= payload.len();
                        }
                    }
                }
                st.closed
            };
            if batch.is_empty() {
                if closed {
                    let _ = w.flush().await;
                    return Ok(());
                }
                self.shared.notify.notified().await;
                continue;
            }
            write_all_vectored(&mut w, &batch)
                .await
                .inspect_err(|_| self.close())?;
            batch.clear();
        }
    }
}

/// Writes every item, resuming after partial writes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    items: &[Out],
) -> std::io::Result<()> {
    // Position: item index, and bytes of that item already written.
    let (mut item, mut done) = (0usize, 0usize);
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(items.len() * 2);
    while item < items.len() {
        slices.clear();
        let mut skip = done;
        for o in &items[item..] {
            let (a, b) = o.parts();
            for part in [a, b] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices.push(IoSlice::new(&part[skip..]));
                skip = 0;
            }
        }
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while item < items.len() {
            let (a, b) = items[item].parts();
            let left = a.len() + b.len() - done;
            if n >= left {
                n -= left;
                item += 1;
                done = 0;
            } else {
                done += n;
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn control_and_media_keep_their_order() {
        let out = ConnOut::new(Backlog::default());
        assert!(out.push_control(Bytes::from_static(b"RTSP/1.0 200 OK\r\n\r\n")));
        assert!(out.push_media(0, &Bytes::from_static(b"abc")));
        assert!(out.push_media(1, &Bytes::from_static(b"")));
        out.close();
        let (mut rd, wr) = tokio::io::duplex(7); // tiny pipe: forces partial writes
        let w = out.clone();
        let writer = tokio::spawn(async move { w.run_writer(wr).await });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(got, b"RTSP/1.0 200 OK\r\n\r\n$\x00\x00\x03abc$\x01\x00\x00");
        assert!(!out.push_control(Bytes::from_static(b"late")));
    }

    #[test]
    fn media_backlog_is_bounded() {
        let out = ConnOut::new(Backlog {
            max_media_packets: 2,
            max_media_bytes: 10,
        });
        let p = Bytes::from_static(b"1234");
        assert!(out.push_media(0, &p));
        assert!(out.push_media(0, &p));
        assert!(!out.push_media(0, &p)); // packet cap
        assert_eq!(out.media_backlog(), (2, 8));
        let small = ConnOut::new(Backlog {
            max_media_packets: 10,
            max_media_bytes: 5,
        });
        assert!(small.push_media(0, &p));
        assert!(!small.push_media(0, &p)); // byte cap
                                           // Control is never refused by the media cap.
        assert!(small.push_control(Bytes::from_static(b"x")));
        assert_eq!(small.control_backlog(), 1);
        let huge = Bytes::from(vec![0u8; 70_000]);
        assert!(!ConnOut::new(Backlog::default()).push_media(0, &huge));
    }

    #[tokio::test]
    async fn writer_failure_closes_the_queue() {
        let out = ConnOut::new(Backlog::default());
        out.push_control(Bytes::from_static(b"hello"));
        let (rd, wr) = tokio::io::duplex(64);
        drop(rd); // viewer gone
        assert!(out.run_writer(wr).await.is_err());
        assert!(out.is_closed());
        assert!(!out.push_media(0, &Bytes::from_static(b"x")));
    }
}
