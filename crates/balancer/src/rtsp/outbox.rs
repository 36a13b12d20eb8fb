//! What the balancer writes to one TCP peer (a client or a back-end connection), in
//! order, from any task.
//!
//! A sender whose message finds nothing queued writes it to the socket at once, from
//! its own task (one non-blocking `send`, no hop to another task): that is the common
//! case of RTSP request and answer, and it keeps the added latency to the proxying
//! itself. What the socket does not take at once is queued; one writer task per peer
//! waits for the socket and writes everything queued with one `writev` per wake-up,
//! so a burst of interleaved frames costs one system call rather than one per frame.
//!
//! The queue is bounded in messages ([`Outbox::send`] waits for room), so a slow peer
//! slows whoever feeds it rather than growing memory. A write error closes the outbox:
//! later sends fail, and the peer's other tasks see it through [`Outbox::is_closed`].
//!
//! What it does not: read, parse or retry; shut the socket's write side before every
//! sender is done ([`Outbox::close`] says when).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, Bytes};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

/// Most buffers one `writev` takes (Linux's `UIO_MAXIOV` is 1024; a few dozen is
/// plenty for one wake-up's worth of RTSP messages and frames).
const MAX_IOV: usize = 64;

/// What [`Outbox::offer`] did with a message.
enum Offer {
    /// Written, queued, or refused for good.
    Done(Result<(), Closed>),
    /// The queue is full: try again when it has room.
    Full(Bytes),
}

/// The peer is gone or the outbox closed: the bytes were not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

#[derive(Default)]
struct State {
    /// Bytes not yet written, in order; the front one may be partly written.
    queue: VecDeque<Bytes>,
    /// No more sends: the writer drains the queue and ends.
    closing: bool,
    /// A write failed: the queue was dropped and every send fails.
    failed: bool,
}

/// One peer's output; shared (`Arc`) by every task that writes to that peer.
pub(crate) struct Outbox {
    wr: OwnedWriteHalf,
    state: Mutex<State>,
    /// Something was queued, or the outbox is closing.
    work: Notify,
    /// The queue shrank or the outbox failed.
    room: Notify,
    limit: usize,
}

impl Outbox {
    /// An outbox for `wr` holding at most `limit` queued messages, and the writer
    /// task's future (spawn it; it ends after [`Outbox::close`] once the queue is
    /// written, or at the first write error).
    pub(crate) fn new(
        wr: OwnedWriteHalf,
        limit: usize,
    ) -> (
        Arc<Self>,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let outbox = Arc::new(Self {
            wr,
            state: Mutex::new(State::default()),
            work: Notify::new(),
            room: Notify::new(),
            limit: limit.max(1),
        });
        let writer = Arc::clone(&outbox).write_queued();
        (outbox, writer)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `bytes` after everything sent before: written now when nothing is
    /// queued and the socket takes it, else queued (waiting while the queue is full).
    pub(crate) async fn send(&self, bytes: Bytes) -> Result<(), Closed> {
        // Most sends find room: they never register for the `room` notification,
        // which would cost a lock of its waiter list and an unlink on drop per message.
        let mut bytes = match self.offer(bytes) {
            Offer::Done(r) => return r,
            Offer::Full(b) => b,
        };
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check below, so room made after it wakes us.
            room.as_mut().enable();
            bytes = match self.offer(bytes) {
                Offer::Done(r) => return r,
                Offer::Full(b) => b,
            };
            room.await;
        }
    }

    /// Writes or queues `bytes` if the queue has room.
    fn offer(&self, mut bytes: Bytes) -> Offer {
        let mut st = self.lock();
        if st.failed || st.closing {
            return Offer::Done(Err(Closed));
        }
        if st.queue.is_empty() {
            // The lock keeps the writer task from starting a write meanwhile: it only
            // writes what is queued.
            match self.wr.try_write(&bytes) {
                Ok(n) if n == bytes.len() => return Offer::Done(Ok(())),
                Ok(n) => bytes.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    drop(st);
                    self.fail_now();
                    return Offer::Done(Err(Closed));
                }
            }
        } else if st.queue.len() >= self.limit {
            return Offer::Full(bytes);
        }
        st.queue.push_back(bytes);
        drop(st);
        self.work.notify_one();
        Offer::Done(Ok(()))
    }

    /// Whether sends fail now (a write failed, or the outbox was closed).
    pub(crate) fn is_closed(&self) -> bool {
        let st = self.lock();
        st.failed || st.closing
    }

    /// No more sends: the writer writes what is queued, then ends, and the socket's
    /// write side is shut down when the last holder of the outbox drops it.
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.work.notify_one();
        self.room.notify_waiters();
    }

    /// The writer task: one `writev` of what is queued per time the socket is
    /// writable.
    async fn write_queued(self: Arc<Self>) {
        let mut batch: Vec<Bytes> = Vec::with_capacity(MAX_IOV);
        loop {
            batch.clear();
            loop {
                let work = self.work.notified();
                tokio::pin!(work);
                work.as_mut().enable();
                {
                    let st = self.lock();
                    if st.failed {
                        return;
                    }
                    if !st.queue.is_empty() {
                        // Cloning a `Bytes` is a reference count, not a copy; the
                        // queue keeps them until they are written.
                        batch.extend(st.queue.iter().take(MAX_IOV).cloned());
                        break;
                    }
                    if st.closing {
                        return;
                    }
                }
                work.await;
            }
            if self.wr.writable().await.is_err() {
                self.fail_now();
                return;
            }
            let slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
            match self.wr.try_write_vectored(&slices) {
                Ok(n) => {
                    let mut st = self.lock();
                    consume(&mut st.queue, n);
                    drop(st);
                    self.room.notify_waiters();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => {
                    self.fail_now();
                    return;
                }
            }
        }
    }

    fn fail_now(&self) {
        fail(&mut self.lock());
        self.room.notify_waiters();
        self.work.notify_one();
    }
}

fn fail(st: &mut State) {
    st.failed = true;
    st.queue.clear();
}

/// Drops the first `n` written bytes from the front of `queue`.
fn consume(queue: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = queue.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            queue.pop_front();
        } else {
            front.advance(n);
            return;
        }
    }
    // A zero-length message would otherwise sit at the front for ever.
    while queue.front().is_some_and(Bytes::is_empty) {
        queue.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), l.accept());
        (a.unwrap(), b.unwrap().0)
    }

    #[test]
    fn consume_drops_whole_and_partial_buffers() {
        let mut q: VecDeque<Bytes> = ["abc", "de", "", "fgh"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        consume(&mut q, 4);
        assert_eq!(
            q,
            vec![
                Bytes::from_static(b"e"),
                Bytes::new(),
                Bytes::from_static(b"fgh")
            ]
        );
        consume(&mut q, 1);
        assert_eq!(q, vec![Bytes::from_static(b"fgh")]);
        consume(&mut q, 3);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn many_senders_bytes_arrive_in_order_and_close_ends_the_stream() {
        let (a, mut b) = pair().await;
        let (_rd, wr) = a.into_split();
        let (out, writer) = Outbox::new(wr, 4);
        let writer = tokio::spawn(writer);
        // Enough to fill the socket buffers, so most of it goes through the queue
        // while the reader below is not yet reading.
        let chunk = Bytes::from(vec![7u8; 64 * 1024]);
        let mut expected = Vec::new();
        let sender = {
            let out = Arc::clone(&out);
            let chunk = chunk.clone();
            tokio::spawn(async move {
                for i in 0..64u8 {
                    out.send(Bytes::from(vec![i; 3])).await.unwrap();
                    out.send(chunk.clone()).await.unwrap();
                }
            })
        };
        for i in 0..64u8 {
            expected.extend_from_slice(&[i; 3]);
            expected.extend_from_slice(&chunk);
        }
        let mut got = Vec::new();
        let reader = tokio::spawn(async move {
            b.read_to_end(&mut got).await.unwrap();
            got
        });
        sender.await.unwrap();
        out.close();
        assert!(out.send(Bytes::from_static(b"late")).await.is_err());
        writer.await.unwrap();
        drop(out);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes reordered or lost");
    }

    #[tokio::test]
    async fn a_gone_peer_fails_later_sends() {
        let (a, b) = pair().await;
        let (_rd, wr) = a.into_split();
        let (out, writer) = Outbox::new(wr, 4);
        let writer = tokio::spawn(writer);
        drop(b);
        let chunk = Bytes::from(vec![1u8; 256 * 1024]);
        let mut failed = false;
        for _ in 0..64 {
            if out.send(chunk.clone()).await.is_err() {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed, "sends to a closed peer kept succeeding");
        assert!(out.is_closed());
        tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the writer ends after a failed write")
            .unwrap();
    }
}
