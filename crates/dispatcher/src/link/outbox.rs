//! What the dispatcher sends one relay: frames written from the sender's own task.
//!
//! A command's frame is written by the task that runs the command when no other
//! write is in flight, so it costs no hand-over to a writer task (on two busy cores
//! each hand-over can wait a scheduling slice). Frames sent while a write is in
//! flight are appended to one buffer, and the task doing that write sends them all in
//! its next write and flush: under load, many commands still share a system call and
//! a TLS record.
//!
//! A write is never cut short: a sender given up on mid-write (a command past its
//! deadline) hands the rest of its frames to a task of its own, since a frame cut in
//! two would break the link. Queued bytes are bounded ([`MAX_QUEUED`]): past that a
//! sender waits for room, or is refused when it cannot wait (pongs).
//!
//! What it does not: read, or know what the frames mean.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use mediagate_link::conn::LinkError;
use mediagate_link::wire::Message;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// Bytes queued behind a write in flight, at most (then senders wait): about a
/// thousand commands, as the writer task's queue held before.
pub(super) const MAX_QUEUED: usize = 2 * 1024 * 1024;

/// Why a frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutboxError {
    /// The link is closed or broken.
    Closed,
    /// [`MAX_QUEUED`] bytes wait already (only [`Outbox::try_send`] says so).
    Full,
}

struct State<W> {
    /// The write half, here while no write is in flight.
    writer: Option<W>,
    /// Frames waiting for the write in flight.
    queued: Vec<u8>,
    /// An empty buffer kept for the next batch, so a batch costs no allocation.
    spare: Vec<u8>,
    /// Why the link broke, once a write failed.
    failed: Option<String>,
    /// No more writes: the link ended.
    closed: bool,
    /// The task finishing a write its sender gave up on, if one runs.
    background: Option<AbortHandle>,
}

/// One link's outgoing side; see the module docs.
pub(super) struct Outbox<W> {
    state: Mutex<State<W>>,
    /// Told when queued bytes went out (room for waiting senders).
    room: Notify,
    /// Told when a write failed.
    broken: Notify,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Outbox<W> {
    pub(super) fn new(writer: W) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                writer: Some(writer),
                queued: Vec::with_capacity(16 * 1024),
                spare: Vec::with_capacity(16 * 1024),
                failed: None,
                closed: false,
                background: None,
            }),
            room: Notify::new(),
            broken: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<W>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `message`: written from this task when no write is in flight, else
    /// queued behind it. Waits while [`MAX_QUEUED`] bytes are queued. Cancel-safe in
    /// the sense that matters: a frame is written whole or not at all.
    pub(super) async fn send(self: &Arc<Self>, message: &Message) -> Result<(), OutboxError> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.enqueue(message) {
                Err(OutboxError::Full) => room.await,
                Err(e) => return Err(e),
                Ok(None) => return Ok(()),
                Ok(Some(flush)) => {
                    flush.run().await;
                    return Ok(());
                }
            }
        }
    }

    /// Sends `message` without waiting: written by a task of its own when no write is
    /// in flight, else queued behind it.
    pub(super) fn try_send(self: &Arc<Self>, message: &Message) -> Result<(), OutboxError> {
        if let Some(flush) = self.enqueue(message)? {
            // Dropped unstarted: its guard hands the frame to a task of its own.
            drop(flush);
        }
        Ok(())
    }

    /// Appends `message`'s frame; when no write is in flight, takes the writer and the
    /// queue for the caller to write.
    fn enqueue(self: &Arc<Self>, message: &Message) -> Result<Option<Flush<W>>, OutboxError> {
        let mut state = self.lock();
        if state.closed {
            return Err(OutboxError::Closed);
        }
        if state.writer.is_none() && state.queued.len() >= MAX_QUEUED {
            return Err(OutboxError::Full);
        }
        if let Err(e) = message.encode_into(&mut state.queued) {
            // As the writer task did: a message the relay would refuse ends the link.
            drop(state);
            self.fail(e.to_string());
            return Err(OutboxError::Closed);
        }
        let Some(writer) = state.writer.take() else {
            return Ok(None);
        };
        let mut buf = std::mem::take(&mut state.spare);
        std::mem::swap(&mut buf, &mut state.queued);
        Ok(Some(Flush {
            outbox: Arc::clone(self),
            writer: Some(writer),
            buf,
            written: 0,
        }))
    }

    /// Resolves when a write failed, with why.
    pub(super) async fn failed(&self) -> LinkError {
        loop {
            let broken = self.broken.notified();
            tokio::pin!(broken);
            broken.as_mut().enable();
            if let Some(why) = self.lock().failed.clone() {
                return LinkError::Protocol(why);
            }
            broken.await;
        }
    }

    /// Ends the link's writing: the write half is dropped (at once when idle, after
    /// the write in flight otherwise), a write left to a task of its own is stopped,
    /// and senders are refused from now on.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.writer = None;
        if let Some(task) = state.background.take() {
            task.abort();
        }
        drop(state);
        self.room.notify_waiters();
    }

    fn fail(&self, why: String) {
        let mut state = self.lock();
        state.failed.get_or_insert(why);
        state.closed = true;
        state.writer = None;
        drop(state);
        self.broken.notify_waiters();
        self.room.notify_waiters();
    }
}

/// The write in flight: holds the writer until the queue is empty, then gives it
/// back. Dropped before that (its sender gave up), it finishes in a task of its own.
struct Flush<W: AsyncWrite + Unpin + Send + 'static> {
    outbox: Arc<Outbox<W>>,
    writer: Option<W>,
    buf: Vec<u8>,
    /// Bytes of `buf` the writer has taken.
    written: usize,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Flush<W> {
    async fn run(mut self) {
        loop {
            let Some(writer) = self.writer.as_mut() else {
                return;
            };
            if let Err(e) = write_rest(writer, &self.buf, &mut self.written).await {
                self.writer = None;
                self.outbox.fail(e.to_string());
                return;
            }
            let mut state = self.outbox.lock();
            if state.closed {
                // Dropping the write half here (not in `close`, which found it away).
                self.writer = None;
                return;
            }
            self.buf.clear();
            self.written = 0;
            if state.queued.is_empty() {
                state.writer = self.writer.take();
                state.spare = std::mem::take(&mut self.buf);
                return;
            }
            std::mem::swap(&mut self.buf, &mut state.queued);
            drop(state);
            self.outbox.room.notify_waiters();
        }
    }
}

/// Writes `buf` from `written` on and flushes, counting what the writer took, so a
/// write that is dropped part way can be resumed where it stopped.
async fn write_rest<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &[u8],
    written: &mut usize,
) -> std::io::Result<()> {
    while let Some(rest) = buf.get(*written..).filter(|r| !r.is_empty()) {
        match writer.write(rest).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => *written += n,
        }
    }
    writer.flush().await
}

impl<W: AsyncWrite + Unpin + Send + 'static> Drop for Flush<W> {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut state = self.outbox.lock();
        if state.closed {
            return;
        }
        let rest = Flush {
            outbox: Arc::clone(&self.outbox),
            writer: Some(writer),
            buf: std::mem::take(&mut self.buf),
            written: self.written,
        };
        let task = runtime.spawn(rest.run());
        state.background = Some(task.abort_handle());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mediagate_link::conn::MessageReader;
    use mediagate_ng::bencode::{dict, Value};

    use super::*;

    fn request(seq: u64, sdp_len: usize) -> Message {
        Message::Request {
            seq,
            body: dict([("sdp", Value::Bytes(vec![b'v'; sdp_len]))]),
        }
    }

    #[tokio::test]
    async fn a_sender_given_up_on_mid_write_leaves_whole_frames() {
        // A pipe far smaller than one frame: the first send stalls mid-write.
        let (ours, theirs) = tokio::io::duplex(64);
        let outbox = Outbox::new(ours);
        let first = request(1, 4000);
        let sent = tokio::time::timeout(Duration::from_millis(20), outbox.send(&first)).await;
        assert!(sent.is_err(), "the pipe is not read, so the send waits");
        // Queued behind the write that now runs in a task of its own.
        outbox.send(&request(2, 10)).await.unwrap();
        outbox.try_send(&Message::Pong { seq: 3 }).unwrap();
        let mut reader = MessageReader::new(theirs);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(reader.next().await.unwrap());
        }
        assert_eq!(
            got,
            vec![request(1, 4000), request(2, 10), Message::Pong { seq: 3 }]
        );
        // All written: the next send writes from this task again.
        outbox.send(&Message::Ping { seq: 4 }).await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Message::Ping { seq: 4 });
    }

    #[tokio::test]
    async fn a_full_queue_refuses_what_cannot_wait_and_holds_what_can() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let outbox = Outbox::new(ours);
        let big = request(1, 512 * 1024);
        let mut sent = 0;
        // The first send stalls (nobody reads); the rest queue up to the cap.
        let stalled = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            let big = big.clone();
            async move { outbox.send(&big).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        while outbox.try_send(&big).is_ok() {
            sent += 1;
            assert!(sent < 100, "the queue is bounded");
        }
        assert_eq!(
            outbox.try_send(&Message::Pong { seq: 1 }),
            Err(OutboxError::Full)
        );
        let waiting = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.send(&Message::Ping { seq: 2 }).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "a sender waits for room");
        // Reading drains the queue; everything arrives whole and in order.
        let mut reader = MessageReader::new(theirs);
        for _ in 0..=sent {
            assert_eq!(reader.next().await.unwrap(), big);
        }
        assert_eq!(reader.next().await.unwrap(), Message::Ping { seq: 2 });
        stalled.await.unwrap().unwrap();
        waiting.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_breaks_the_link_and_refuses_senders() {
        let (ours, theirs) = tokio::io::duplex(64);
        drop(theirs);
        let outbox = Outbox::new(ours);
        outbox.send(&Message::Ping { seq: 1 }).await.unwrap();
        let why = tokio::time::timeout(Duration::from_secs(5), outbox.failed())
            .await
            .expect("the failure is reported");
        assert!(!why.to_string().is_empty());
        assert_eq!(
            outbox.send(&Message::Ping { seq: 2 }).await,
            Err(OutboxError::Closed)
        );
    }

    #[tokio::test]
    async fn a_closed_outbox_refuses_senders() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let outbox = Outbox::new(ours);
        outbox.close();
        assert_eq!(
            outbox.try_send(&Message::Ping { seq: 1 }),
            Err(OutboxError::Closed)
        );
    }
}
