//! A UDP forwarding ring (Linux `io_uring`): receives on many sockets and sends from
//! many sockets with one system call per batch instead of two per datagram.
//!
//! What it does: [`UdpRing::add`] arms a multishot `recvmsg` on a socket; the kernel
//! then reads every datagram that arrives into a buffer taken from a provided-buffer
//! ring, with no system call, and posts a completion. [`UdpRing::drain`] hands each
//! datagram (payload, source, truncation) with the socket's token to the caller, who
//! answers with where to forward it: `(socket, destination)`. The forward is sent
//! straight out of the receive buffer (no copy) from that socket; the buffer goes back
//! to the kernel when the send completes. [`UdpRing::wait`] submits the queued sends
//! and waits for the next completions, so one `io_uring_enter` carries a whole batch of
//! sends and collects a whole batch of receives.
//!
//! Why: a relay's sockets each carry about 50 packets a second, so an `epoll` loop
//! wakes for one datagram per socket and pays a `recvmmsg` and a `sendto` per packet;
//! each forward leaves from a different socket, so `sendmmsg` cannot group them. Here
//! the system-call cost is shared by everything that arrived in the same interval.
//!
//! What it does not: own the sockets (the caller keeps them open until it has called
//! [`UdpRing::cancel`]), decide anything about packets, or run on kernels older than 6.1
//! (`DEFER_TASKRUN`); [`UdpRing::new`] fails there and the caller falls back to
//! [`crate::Poller`].
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{BufRingEntry, CancelBuilder, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use crate::recv::decode_addr;
use crate::sys::sockaddr;

/// The largest token [`UdpRing::add`] accepts (two bits of `user_data` say what a
/// completion belongs to).
pub const MAX_TOKEN: u64 = (1 << 62) - 1;
const KIND_MASK: u64 = 3 << 62;
const KIND_RECV: u64 = 0;
const KIND_SEND: u64 = 1 << 62;
const KIND_OTHER: u64 = 2 << 62;
/// Reap-and-submit rounds per [`UdpRing::drain`]: sends complete inline, so the second
/// round finds their completions; the bound keeps one drain from running forever.
const DRAIN_PASSES: usize = 3;
/// The one buffer group this ring uses.
const GROUP: u16 = 0;
/// `io_uring_recvmsg_out`, which precedes the source address in each buffer.
const RECVMSG_OUT: usize = 16;
/// Room for the source address in each buffer (IPv6 is the larger).
const NAME_LEN: usize = std::mem::size_of::<libc::sockaddr_in6>();

/// Sizes of a [`UdpRing`].
#[derive(Debug, Clone, Copy)]
pub struct RingOptions {
    /// Receive buffers (a power of two, at most 32,768): datagrams received and not yet
    /// forwarded or dropped. When all are in use the kernel keeps new datagrams in the
    /// socket queues and the ring re-arms the receive once buffers come back.
    pub buffers: u16,
    /// Longest payload kept whole; a longer datagram arrives truncated and flagged.
    pub max_datagram: usize,
    /// Submission queue entries (sends and receives queued between two waits).
    pub entries: u32,
    /// Most sockets watched at once (registered with the kernel so that each operation
    /// skips the descriptor lookup).
    pub sockets: u32,
}

impl Default for RingOptions {
    fn default() -> Self {
        Self {
            buffers: 2048,
            max_datagram: 4096,
            entries: 2048,
            sockets: 16_384,
        }
    }
}

/// A socket registered with a [`UdpRing`]: what [`UdpRing::drain`]'s caller names to
/// send from, and what [`UdpRing::rearm`] and [`UdpRing::cancel`] take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot(u32);

/// A datagram or the end of a socket's receive, as [`UdpRing::drain`] reports them.
#[derive(Debug)]
pub enum Event<'a> {
    /// A datagram arrived on the socket with this token.
    Datagram {
        /// The token given to [`UdpRing::add`].
        token: u64,
        /// The payload (cut to `max_datagram` when `truncated`).
        data: &'a [u8],
        /// The sender.
        from: SocketAddr,
        /// The datagram was longer than `max_datagram`.
        truncated: bool,
    },
    /// A forward could not be sent; `token` names the socket it was to leave from. On a
    /// connected socket this is how an ICMP error reported by the kernel shows up.
    SendFailed {
        /// The token the sending socket was added with.
        token: u64,
        /// The errno of the send.
        errno: i32,
    },
    /// The socket's multishot receive stopped: cancelled, out of buffers (`ENOBUFS`), or
    /// a socket error. Nothing more arrives for the token until it is added again.
    Stopped {
        /// The token given to [`UdpRing::add`].
        token: u64,
        /// The errno that ended it (`ECANCELED` after [`UdpRing::cancel`]).
        errno: i32,
    },
}

/// What one [`UdpRing::drain`] did besides reporting events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Datagrams reported.
    pub received: u64,
    /// Forwards the kernel completed.
    pub sent: u64,
    /// Forwards the kernel refused.
    pub send_errors: u64,
}

/// Receive buffers: one allocation the kernel writes into, and the provided-buffer
/// ring that lends them to it.
struct Buffers {
    data: *mut u8,
    data_layout: Layout,
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    size: usize,
    count: u16,
    tail: u16,
    /// Each buffer's forward destination while its send is in flight.
    dest: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    /// The slot each in-flight send leaves from.
    sender: Vec<u32>,
}

impl Buffers {
    fn new(count: u16, size: usize) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32_768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring buffer count must be a power of two up to 32768",
            ));
        }
        let invalid = |_| io::Error::new(io::ErrorKind::InvalidInput, "ring too large");
        let data_layout =
            Layout::from_size_align(size * usize::from(count), 64).map_err(invalid)?;
        let ring_layout = Layout::from_size_align(
            std::mem::size_of::<BufRingEntry>() * usize::from(count),
            4096,
        )
        .map_err(invalid)?;
        // SAFETY: both layouts have a non-zero size (count ≥ 1, size ≥ 1).
        let data = unsafe { alloc::alloc(data_layout) };
        // SAFETY: as above; the ring must start zeroed (its tail lives in entry 0).
        let ring = unsafe { alloc::alloc_zeroed(ring_layout) }.cast::<BufRingEntry>();
        if data.is_null() || ring.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        // SAFETY: sockaddr_storage is plain old data, valid when zeroed.
        let empty: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        Ok(Self {
            data,
            data_layout,
            ring,
            ring_layout,
            size,
            count,
            tail: 0,
            dest: vec![(empty, 0); usize::from(count)],
            sender: vec![0; usize::from(count)],
        })
    }

    /// Queues buffer `bid` for the kernel; [`Buffers::publish`] makes it visible.
    fn give_back(&mut self, bid: u16) {
        if bid >= self.count {
            return;
        }
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot` < count entries of the ring allocation; `bid` < count buffers
        // of the data allocation. The kernel reads an entry only after the tail moves
        // past it, which `publish` does afterwards.
        unsafe {
            let entry = &mut *self.ring.add(slot);
            entry.set_addr(self.data.add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// The send of `len` bytes at `ptr` (inside buffer `bid`) from `slot` to `to`
    /// (`None`: the socket's connected peer); remembers the sender for error reports.
    fn send_entry(
        &mut self,
        bid: u16,
        slot: Slot,
        to: Option<SocketAddr>,
        ptr: *const u8,
        len: usize,
    ) -> squeue::Entry {
        let i = usize::from(bid);
        if let Some(sender) = self.sender.get_mut(i) {
            *sender = slot.0;
        }
        let send = opcode::Send::new(Fixed(slot.0), ptr, len as u32);
        let send = match (to, self.dest.get_mut(i)) {
            (Some(to), Some(dest)) => {
                *dest = sockaddr(to);
                send.dest_addr(std::ptr::from_ref(&dest.0).cast())
                    .dest_addr_len(dest.1)
            }
            _ => send,
        };
        send.build().user_data(KIND_SEND | u64::from(bid))
    }

    fn publish(&self) {
        // SAFETY: the tail field lies within the ring allocation; the kernel reads it
        // with acquire ordering, so the release store orders the entries before it.
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast_mut();
            std::sync::atomic::AtomicU16::from_ptr(tail)
                .store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    /// The first `len` bytes of buffer `bid`, which the kernel has handed back.
    ///
    /// # Safety
    /// The kernel must have completed a receive into `bid` and the buffer must not have
    /// been given back since.
    unsafe fn filled(&self, bid: u16, len: usize) -> &[u8] {
        let len = len.min(self.size);
        // SAFETY: the caller guarantees the kernel is not writing this buffer; it lies
        // within the data allocation (bid < count is checked by the caller).
        unsafe { std::slice::from_raw_parts(self.data.add(usize::from(bid) * self.size), len) }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly these layouts, freed once.
        unsafe {
            alloc::dealloc(self.data, self.data_layout);
            alloc::dealloc(self.ring.cast(), self.ring_layout);
        }
    }
}

/// The forwarding ring; see the module docs.
pub struct UdpRing {
    // Declared first so it is dropped first: closing the ring ends every request
    // before the buffers it could write into are freed.
    ring: IoUring,
    buffers: Buffers,
    /// The `recvmsg` template: only the name and control lengths matter to the kernel.
    template: Box<libc::msghdr>,
    in_flight: usize,
    /// Receives to arm again, oldest first ([`UdpRing::rearm`]).
    rearms: VecDeque<(Slot, u64)>,
    /// Registered-file slots not in use.
    free_slots: Vec<u32>,
    /// The token each registered slot was added with.
    slot_tokens: Vec<u64>,
    /// The kernel honours a minimum wait for a batch (Linux 6.12+).
    min_wait: bool,
}

// SAFETY: the raw pointers in `Buffers` are owned allocations, used only through
// `&mut self`; moving the ring to another thread moves sole ownership with it.
unsafe impl Send for UdpRing {}

impl std::fmt::Debug for UdpRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpRing")
            .field("buffers", &self.buffers.count)
            .field("buffer_size", &self.buffers.size)
            .field("sends_in_flight", &self.in_flight)
            .field("rearms_queued", &self.rearms.len())
            .finish()
    }
}

impl UdpRing {
    /// A ring for this thread. Fails where the kernel lacks what it needs (io_uring
    /// disabled or filtered, or older than 6.1); callers fall back to `epoll`.
    pub fn new(options: RingOptions) -> io::Result<Self> {
        let size = RECVMSG_OUT + NAME_LEN + options.max_datagram.max(1);
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(options.entries.saturating_mul(8))
            .build(options.entries)?;
        // A process cannot hold more sockets than its open-file limit, and the kernel
        // refuses a larger table.
        let sockets = crate::rlimit::nofile_soft().map_or(options.sockets, |n| {
            options.sockets.min(u32::try_from(n).unwrap_or(u32::MAX))
        });
        ring.submitter().register_files_sparse(sockets)?;
        let mut buffers = Buffers::new(options.buffers, size)?;
        for bid in 0..options.buffers {
            buffers.give_back(bid);
        }
        buffers.publish();
        // SAFETY: the ring memory stays valid until `buffers` drops, which happens after
        // the ring (and so the registration) is gone.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.ring as u64,
                options.buffers,
                GROUP,
                0,
            )?;
        }
        // SAFETY: msghdr is plain old data, valid when zeroed.
        let mut template: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = NAME_LEN as libc::socklen_t;
        let min_wait = ring.params().is_feature_min_timeout();
        Ok(Self {
            ring,
            buffers,
            template,
            in_flight: 0,
            rearms: VecDeque::new(),
            free_slots: (0..sockets).rev().collect(),
            slot_tokens: vec![0; sockets as usize],
            min_wait,
        })
    }

    /// Registers `fd` and starts receiving on it, reported with `token` (at most
    /// [`MAX_TOKEN`]). The socket must stay open until [`UdpRing::cancel`] has been
    /// called for the returned slot.
    pub fn add(&mut self, fd: RawFd, token: u64) -> io::Result<Slot> {
        if token > MAX_TOKEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "token too large",
            ));
        }
        let slot = self
            .free_slots
            .pop()
            .ok_or_else(|| io::Error::other("io_uring socket table full"))?;
        if let Err(e) = self.ring.submitter().register_files_update(slot, &[fd]) {
            self.free_slots.push(slot);
            return Err(e);
        }
        if let Some(t) = self.slot_tokens.get_mut(slot as usize) {
            *t = token;
        }
        let slot = Slot(slot);
        if let Err(e) = self.arm(slot, token) {
            let _ = self.ring.submitter().register_files_update(slot.0, &[-1]);
            self.free_slots.push(slot.0);
            return Err(e);
        }
        Ok(slot)
    }

    /// Submits everything queued now (sends included), without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        self.ring.submit().map(drop)
    }

    /// Receives again on a socket whose receive stopped ([`Event::Stopped`] other than
    /// `ECANCELED`, for example out of buffers), from the next [`UdpRing::wait`] on.
    ///
    /// Re-arms are paced: each wait arms at most an eighth of the buffer count, oldest
    /// first. A receive stops for want of buffers only when its socket has datagrams
    /// waiting, so re-arming hundreds of sockets at once would see most of them stop
    /// again at once, costing a submission and a completion each for nothing; the
    /// waiting datagrams stay queued in their sockets meanwhile.
    pub fn rearm(&mut self, slot: Slot, token: u64) {
        self.rearms.push_back((slot, token));
    }

    fn arm(&mut self, slot: Slot, token: u64) -> io::Result<()> {
        let entry = opcode::RecvMsgMulti::new(Fixed(slot.0), &*self.template, GROUP)
            .build()
            .user_data(KIND_RECV | (token & MAX_TOKEN));
        self.push(&entry)
    }

    fn arm_queued(&mut self) -> io::Result<()> {
        let budget = usize::from(self.buffers.count / 8).max(1);
        for _ in 0..budget {
            let Some((slot, token)) = self.rearms.pop_front() else {
                break;
            };
            if let Err(e) = self.arm(slot, token) {
                self.rearms.push_front((slot, token));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Stops receiving on a socket and unregisters it, at once: everything queued is
    /// submitted first (sends from it included), so the caller may close the socket
    /// right after. The stop is reported later as [`Event::Stopped`] with `ECANCELED`.
    pub fn cancel(&mut self, slot: Slot) -> io::Result<()> {
        // A re-arm still queued would otherwise receive on whatever takes the slot next.
        self.rearms.retain(|&(queued, _)| queued != slot);
        let entry = opcode::AsyncCancel2::new(CancelBuilder::fd(Fixed(slot.0)).all())
            .build()
            .user_data(KIND_OTHER);
        let submitted = self
            .push(&entry)
            .and_then(|()| self.ring.submit().map(drop));
        // Unregistered whatever happened above: the caller closes the socket next, and a
        // registration left behind would keep it open and receiving.
        let unregistered = self.ring.submitter().register_files_update(slot.0, &[-1]);
        self.free_slots.push(slot.0);
        submitted.and(unregistered.map(drop))
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the entry's pointers (template, buffers, destinations) live as
            // long as the ring.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    /// Submits everything queued and waits until at least one completion is ready or
    /// `timeout` passes. With `batch` > 1 and a non-zero `linger` it waits for that many
    /// completions for up to `linger` first (fewer wake-ups, that much more latency),
    /// then for one. Kernels without io_uring's minimum-wait (before 6.12) get the same
    /// bound another way: after a wake-up with fewer than `batch` completions the
    /// thread sleeps `linger`.
    pub fn wait(&mut self, timeout: Duration, batch: usize, linger: Duration) -> io::Result<()> {
        self.arm_queued()?;
        let ts = Timespec::from(timeout);
        let mut args = SubmitArgs::new().timespec(&ts);
        let coalesce = batch > 1 && !linger.is_zero();
        let want = if coalesce && self.min_wait {
            args = args.min_wait_usec(u32::try_from(linger.as_micros()).unwrap_or(u32::MAX));
            batch
        } else {
            1
        };
        let result = match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        };
        if coalesce && !self.min_wait && result.is_ok() {
            let ready = self.ring.completion().len();
            if ready > 0 && ready < batch {
                std::thread::sleep(linger);
            }
        }
        result
    }

    /// Reports every completed receive to `on_event` and sends the forwards it asks
    /// for: `Some((slot to send from, destination))`, only asked for datagrams, where a
    /// destination of `None` means the socket is connected and sends to its peer.
    ///
    /// Normally the sends go out with the next [`UdpRing::wait`], in the same system
    /// call as the wait. When receives have stopped for want of buffers, they are
    /// submitted before it returns instead and their completions reaped, so their
    /// buffers are back in the ring before any receive is re-armed: left for the next
    /// wait, a burst larger than the ring would hold every buffer through that submit,
    /// and each receive re-armed in it would stop again at once (`ENOBUFS`), a storm of
    /// re-arms that feeds itself on a loaded host.
    pub fn drain<F>(&mut self, mut on_event: F) -> io::Result<Drained>
    where
        F: FnMut(Event<'_>) -> Option<(Slot, Option<SocketAddr>)>,
    {
        let mut done = Drained::default();
        let (submitter, mut sq, mut cq) = self.ring.split();
        for _ in 0..DRAIN_PASSES {
            cq.sync();
            let mut queued = 0usize;
            let mut stopped = false;
            for cqe in &mut cq {
                let (user_data, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
                match user_data & KIND_MASK {
                    KIND_RECV => {
                        let token = user_data & !KIND_MASK;
                        if let Some(bid) = cqueue::buffer_select(flags) {
                            let forward = datagram(&self.buffers, &self.template, bid, res)
                                .and_then(|(data, from, truncated)| {
                                    done.received += 1;
                                    let event = Event::Datagram {
                                        token,
                                        data,
                                        from,
                                        truncated,
                                    };
                                    on_event(event).map(|to| (to, data.as_ptr(), data.len()))
                                });
                            match forward {
                                Some(((slot, to), ptr, len)) => {
                                    let entry = self.buffers.send_entry(bid, slot, to, ptr, len);
                                    // SAFETY: the payload stays in buffer `bid`, and the
                                    // destination in `dest[bid]`, until this send
                                    // completes.
                                    while unsafe { sq.push(&entry) }.is_err() {
                                        sq.sync();
                                        submitter.submit()?;
                                        sq.sync();
                                    }
                                    self.in_flight += 1;
                                    queued += 1;
                                }
                                None => self.buffers.give_back(bid),
                            }
                        }
                        if !cqueue::more(flags) {
                            let errno = if res < 0 { -res } else { 0 };
                            stopped |= errno == libc::ENOBUFS;
                            on_event(Event::Stopped { token, errno });
                        }
                    }
                    KIND_SEND => {
                        self.in_flight = self.in_flight.saturating_sub(1);
                        let bid = (user_data & 0xffff) as u16;
                        if res < 0 {
                            done.send_errors += 1;
                            let token = self
                                .buffers
                                .sender
                                .get(usize::from(bid))
                                .and_then(|&s| self.slot_tokens.get(s as usize));
                            if let Some(&token) = token {
                                on_event(Event::SendFailed { token, errno: -res });
                            }
                        } else {
                            done.sent += 1;
                        }
                        self.buffers.give_back(bid);
                    }
                    _ => {}
                }
            }
            self.buffers.publish();
            if queued == 0 || (!stopped && self.rearms.is_empty()) {
                break;
            }
            sq.sync();
            submitter.submit()?;
        }
        Ok(done)
    }
}

impl Drop for UdpRing {
    /// Cancels every request and collects the completions (bounded), so that no
    /// receive is still able to write into a buffer when the memory is freed.
    fn drop(&mut self) {
        let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(KIND_OTHER);
        if self.push(&entry).is_err() {
            return;
        }
        for _ in 0..10 {
            if self
                .wait(Duration::from_millis(5), 1, Duration::ZERO)
                .is_err()
            {
                return;
            }
            if self.drain(|_| None).is_err() {
                return;
            }
            if self.in_flight == 0 {
                return;
            }
        }
    }
}

/// The datagram a receive completion put in buffer `bid`: payload, source and whether
/// it was cut short. `None` for an error or a malformed header.
fn datagram<'b>(
    buffers: &'b Buffers,
    template: &libc::msghdr,
    bid: u16,
    res: i32,
) -> Option<(&'b [u8], SocketAddr, bool)> {
    let len = usize::try_from(res).ok()?;
    if bid >= buffers.count {
        return None;
    }
    // SAFETY: the kernel handed `bid` back with this completion and it is given back
    // only after the caller is done with it (or when its send completes).
    let buf = unsafe { buffers.filled(bid, len) };
    let out = RecvMsgOut::parse(buf, template).ok()?;
    let from = source(out.name_data())?;
    // `payload_data` borrows `out`; the same bytes, re-sliced from `buf`, outlive it.
    let payload = out.payload_data();
    let start = (payload.as_ptr() as usize).checked_sub(buf.as_ptr() as usize)?;
    let payload = buf.get(start..start.checked_add(payload.len())?)?;
    Some((payload, from, out.is_payload_truncated()))
}

fn source(name: &[u8]) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data, valid when zeroed.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = name
        .len()
        .min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: copies `len` bytes, within both the source slice and the storage.
    unsafe {
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            std::ptr::from_mut(&mut storage).cast::<u8>(),
            len,
        );
    }
    decode_addr(&storage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    /// A small ring, or a failure naming why this host cannot run the ring tests (the
    /// relay falls back to epoll there, which its own tests check).
    fn ring() -> UdpRing {
        UdpRing::new(RingOptions {
            buffers: 64,
            max_datagram: 256,
            entries: 64,
            sockets: 8,
        })
        .unwrap_or_else(|e| {
            panic!(
                "the io_uring tests need io_uring and it is unavailable here: {e}; \
                 check /proc/sys/kernel/io_uring_disabled is 0 and that no seccomp filter \
                 (e.g. a container's) refuses io_uring_setup"
            )
        })
    }

    /// Drains until `want` datagrams were seen or a second passes.
    fn pump<F>(ring: &mut UdpRing, want: u64, mut f: F) -> Drained
    where
        F: FnMut(Event<'_>) -> Option<(Slot, Option<SocketAddr>)>,
    {
        let mut total = Drained::default();
        let deadline = Instant::now() + Duration::from_secs(1);
        while total.received < want && Instant::now() < deadline {
            ring.wait(Duration::from_millis(20), 1, Duration::ZERO)
                .unwrap();
            let d = ring.drain(&mut f).unwrap();
            total.received += d.received;
            total.sent += d.sent;
            total.send_errors += d.send_errors;
        }
        // Collect the last sends' completions.
        ring.wait(Duration::from_millis(5), 1, Duration::ZERO)
            .unwrap();
        let d = ring.drain(&mut f).unwrap();
        total.sent += d.sent;
        total.send_errors += d.send_errors;
        total
    }

    #[test]
    fn forwards_from_the_socket_the_caller_names() {
        let mut ring = ring();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        ring.add(a.as_raw_fd(), 7).unwrap();
        let b_slot = ring.add(b.as_raw_fd(), 8).unwrap();
        let peer_addr = peer.local_addr().unwrap();
        for i in 0..10u8 {
            phone.send_to(&[i; 100], a.local_addr().unwrap()).unwrap();
        }
        let mut seen = Vec::new();
        let done = pump(&mut ring, 10, |ev| match ev {
            Event::Datagram {
                token,
                data,
                from,
                truncated,
            } => {
                seen.push((token, data.to_vec(), from, truncated));
                Some((b_slot, Some(peer_addr)))
            }
            Event::Stopped { .. } | Event::SendFailed { .. } => None,
        });
        assert_eq!(done.received, 10);
        assert_eq!(done.sent, 10);
        assert_eq!(done.send_errors, 0);
        for (i, (token, data, from, truncated)) in seen.iter().enumerate() {
            assert_eq!(*token, 7);
            assert_eq!(data, &vec![i as u8; 100]);
            assert_eq!(*from, phone.local_addr().unwrap());
            assert!(!truncated);
        }
        let mut buf = [0u8; 512];
        for i in 0..10u8 {
            let (n, src) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[i; 100][..]);
            assert_eq!(src, b.local_addr().unwrap(), "sent from the named socket");
        }
    }

    #[test]
    fn buffers_are_recycled_beyond_the_pool_size() {
        let mut ring = ring();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a_slot = ring.add(a.as_raw_fd(), 1).unwrap();
        let sink_addr = sink.local_addr().unwrap();
        let mut received = 0;
        let mut stopped = Vec::new();
        // 64 buffers; 500 datagrams in rounds, half dropped and half forwarded.
        for round in 0..10u64 {
            for _ in 0..50 {
                phone.send_to(&[1u8; 40], a.local_addr().unwrap()).unwrap();
            }
            let mut n = 0u64;
            let d = pump(&mut ring, 50, |ev| match ev {
                Event::Datagram { .. } => {
                    n += 1;
                    (n % 2 == 0).then_some((a_slot, Some(sink_addr)))
                }
                Event::Stopped { token, errno } => {
                    stopped.push((token, errno));
                    None
                }
                Event::SendFailed { .. } => None,
            });
            received += d.received;
            assert_eq!(d.received, 50, "round {round}");
        }
        assert_eq!(received, 500);
        assert!(stopped.is_empty(), "{stopped:?}");
    }

    /// `count` sockets added to the ring (tokens 0..count), each with `per_socket`
    /// datagrams already queued, and a sink address to forward them to.
    fn backlog(
        ring: &mut UdpRing,
        count: usize,
        per_socket: usize,
    ) -> (Vec<UdpSocket>, Vec<Slot>, UdpSocket) {
        let sockets: Vec<UdpSocket> = (0..count)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let slots: Vec<Slot> = sockets
            .iter()
            .enumerate()
            .map(|(i, s)| ring.add(s.as_raw_fd(), i as u64).unwrap())
            .collect();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in &sockets {
            for _ in 0..per_socket {
                phone.send_to(&[7u8; 60], s.local_addr().unwrap()).unwrap();
            }
        }
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        (sockets, slots, sink)
    }

    /// One wait and drain forwarding every datagram from its own socket to `to`; every
    /// receive that stopped is queued for re-arming and reported `(token, errno)`.
    fn forward_round(
        ring: &mut UdpRing,
        slots: &[Slot],
        to: SocketAddr,
    ) -> (Drained, Vec<(u64, i32)>) {
        ring.wait(Duration::from_millis(20), 1, Duration::ZERO)
            .unwrap();
        let mut stops = Vec::new();
        let d = ring
            .drain(|ev| match ev {
                Event::Datagram { token, .. } => Some((slots[token as usize], Some(to))),
                Event::Stopped { token, errno } => {
                    stops.push((token, errno));
                    None
                }
                Event::SendFailed { .. } => None,
            })
            .unwrap();
        for &(t, _) in &stops {
            ring.rearm(slots[t as usize], t);
        }
        (d, stops)
    }

    #[test]
    fn running_out_of_buffers_stops_a_receive_and_rearming_resumes_it() {
        let mut ring = ring();
        // 200 datagrams queued before the ring looks: more than its 64 buffers.
        let (_sockets, slots, sink) = backlog(&mut ring, 4, 50);
        let sink_addr = sink.local_addr().unwrap();
        let (mut received, mut sent, mut no_buffers) = (0u64, 0u64, 0u64);
        let deadline = Instant::now() + Duration::from_secs(2);
        while (received < 200 || sent < 200) && Instant::now() < deadline {
            let (d, stops) = forward_round(&mut ring, &slots, sink_addr);
            assert!(stops.iter().all(|&(_, errno)| errno == libc::ENOBUFS));
            no_buffers += stops.len() as u64;
            received += d.received;
            sent += d.sent;
        }
        assert_eq!((received, sent), (200, 200));
        assert!(no_buffers > 0, "the pool ran dry at least once");
    }

    /// A burst larger than the ring: each drain hands its buffers back before it
    /// returns, so a receive re-armed after it finds buffers and makes progress
    /// instead of stopping again at once (the self-feeding re-arm storm).
    #[test]
    fn a_drain_returns_its_buffers_so_rearms_make_progress() {
        let mut ring = ring();
        // 400 datagrams, 50 per socket, against 64 buffers.
        let (_sockets, slots, sink) = backlog(&mut ring, 8, 50);
        let sink_addr = sink.local_addr().unwrap();
        let (mut sent, mut rounds, mut futile) = (0u64, 0u32, 0u32);
        let mut rearmed = false;
        let deadline = Instant::now() + Duration::from_secs(2);
        while sent < 400 && Instant::now() < deadline {
            let (d, stops) = forward_round(&mut ring, &slots, sink_addr);
            if !stops.is_empty() {
                assert_eq!(ring.in_flight, 0, "sends reaped before re-arms");
            }
            if rearmed && d.received == 0 {
                futile += 1;
            }
            rearmed = !stops.is_empty();
            sent += d.sent;
            rounds += 1;
        }
        assert_eq!(sent, 400);
        assert_eq!(futile, 0, "a round after re-arming received nothing");
        assert!(
            rounds <= 12,
            "{rounds} rounds for 400 datagrams and 64 buffers"
        );
    }

    /// A re-arm still queued when its socket is cancelled must not arm whatever
    /// socket takes the slot next (its datagrams would carry the old token).
    #[test]
    fn cancel_drops_a_queued_rearm() {
        let mut ring = ring();
        let old = UdpSocket::bind("127.0.0.1:0").unwrap();
        let slot = ring.add(old.as_raw_fd(), 1).unwrap();
        ring.rearm(slot, 1);
        ring.cancel(slot).unwrap();
        drop(old);
        let new = UdpSocket::bind("127.0.0.1:0").unwrap();
        let reused = ring.add(new.as_raw_fd(), 2).unwrap();
        assert_eq!(reused, slot, "the freed slot is taken again");
        // Everything queued is armed before a datagram exists, so a stale receive would
        // compete for them.
        ring.wait(Duration::from_millis(1), 1, Duration::ZERO)
            .unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..20 {
            phone
                .send_to(&[1u8; 40], new.local_addr().unwrap())
                .unwrap();
        }
        let mut tokens = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while tokens.len() < 20 && Instant::now() < deadline {
            ring.wait(Duration::from_millis(20), 1, Duration::ZERO)
                .unwrap();
            ring.drain(|ev| {
                if let Event::Datagram { token, .. } = ev {
                    tokens.push(token);
                }
                None
            })
            .unwrap();
        }
        assert_eq!(tokens, vec![2; 20]);
    }

    /// A forward with no destination leaves a connected socket for its peer.
    #[test]
    fn a_connected_socket_sends_without_a_destination() {
        let mut ring = ring();
        let inbound = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let out = UdpSocket::bind("127.0.0.1:0").unwrap();
        out.connect(peer.local_addr().unwrap()).unwrap();
        ring.add(inbound.as_raw_fd(), 1).unwrap();
        let out_slot = ring.add(out.as_raw_fd(), 2).unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        phone
            .send_to(b"via", inbound.local_addr().unwrap())
            .unwrap();
        let d = pump(&mut ring, 1, |ev| match ev {
            Event::Datagram { token: 1, .. } => Some((out_slot, None)),
            _ => None,
        });
        assert_eq!((d.received, d.sent, d.send_errors), (1, 1, 0));
        peer.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"via"[..], out.local_addr().unwrap()));
    }

    /// A connected socket whose peer is gone gets ICMP port unreachable, which the
    /// kernel reports on its next operation: a failed send names the socket it was to
    /// leave from. (The socket's own receive may see the error first and stop; it is not
    /// re-armed here, so a later error can only reach a send.)
    #[test]
    fn an_icmp_error_on_a_connected_socket_names_it() {
        let mut ring = ring();
        let inbound = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gone_addr = gone.local_addr().unwrap();
        drop(gone);
        let out = UdpSocket::bind("127.0.0.1:0").unwrap();
        out.connect(gone_addr).unwrap();
        ring.add(inbound.as_raw_fd(), 1).unwrap();
        let out_slot = ring.add(out.as_raw_fd(), 2).unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut send_failures, mut stops) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(2);
        while send_failures.is_empty() && Instant::now() < deadline {
            phone.send_to(b"x", inbound.local_addr().unwrap()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            ring.wait(Duration::from_millis(20), 1, Duration::ZERO)
                .unwrap();
            ring.drain(|ev| match ev {
                Event::Datagram { token: 1, .. } => Some((out_slot, None)),
                Event::SendFailed { token, errno } => {
                    send_failures.push((token, errno));
                    None
                }
                Event::Stopped { token, errno } => {
                    stops.push((token, errno));
                    None
                }
                Event::Datagram { .. } => None,
            })
            .unwrap();
        }
        assert_eq!(send_failures.first(), Some(&(2, libc::ECONNREFUSED)));
        assert!(
            send_failures.iter().chain(&stops).all(|&(t, _)| t == 2),
            "{send_failures:?} {stops:?}"
        );
    }

    /// A lone datagram under coalescing waits about `linger`, not the idle timeout.
    fn coalescing_waits_at_most_the_linger(kernel_min_wait: bool) {
        let mut ring = ring();
        assert!(
            !kernel_min_wait || ring.min_wait,
            "this kernel has no io_uring minimum wait (IORING_FEAT_MIN_TIMEOUT, Linux \
             6.12), so the coalescing path that uses it cannot be checked here (the \
             sleeping fallback has its own test)"
        );
        ring.min_wait = kernel_min_wait;
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        ring.add(a.as_raw_fd(), 1).unwrap();
        ring.wait(Duration::from_millis(1), 1, Duration::ZERO)
            .unwrap();
        phone.send_to(b"x", a.local_addr().unwrap()).unwrap();
        let started = Instant::now();
        ring.wait(Duration::from_secs(2), 16, Duration::from_millis(30))
            .unwrap();
        let waited = started.elapsed();
        let d = ring.drain(|_| None).unwrap();
        assert_eq!(d.received, 1, "kernel min wait: {kernel_min_wait}");
        assert!(
            waited < Duration::from_millis(1000),
            "waited {waited:?} (kernel min wait: {kernel_min_wait})"
        );
    }

    #[test]
    fn coalescing_waits_at_most_the_linger_with_the_kernel_minimum_wait() {
        coalescing_waits_at_most_the_linger(true);
    }

    #[test]
    fn coalescing_waits_at_most_the_linger_with_the_sleeping_fallback() {
        coalescing_waits_at_most_the_linger(false);
    }

    #[test]
    fn long_datagrams_are_flagged_and_cut() {
        let mut ring = ring();
        let a = crate::test_env::bind_ipv6("[::1]:0");
        let phone = UdpSocket::bind(SocketAddr::new(a.local_addr().unwrap().ip(), 0)).unwrap();
        ring.add(a.as_raw_fd(), 3).unwrap();
        phone.send_to(&[9u8; 300], a.local_addr().unwrap()).unwrap();
        let mut got = None;
        pump(&mut ring, 1, |ev| {
            if let Event::Datagram {
                data,
                truncated,
                from,
                ..
            } = ev
            {
                got = Some((data.len(), truncated, from));
            }
            None
        });
        assert_eq!(got, Some((256, true, phone.local_addr().unwrap())));
    }

    #[test]
    fn cancel_stops_the_socket() {
        let mut ring = ring();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
        let slot = ring.add(a.as_raw_fd(), 5).unwrap();
        ring.wait(Duration::from_millis(1), 1, Duration::ZERO)
            .unwrap();
        ring.cancel(slot).unwrap();
        let mut events = Vec::new();
        pump(&mut ring, 1, |ev| {
            match ev {
                Event::Datagram { token, .. } => events.push((token, 0)),
                Event::Stopped { token, errno } => events.push((token, errno)),
                Event::SendFailed { .. } => {}
            }
            None
        });
        assert_eq!(events, vec![(5, libc::ECANCELED)]);
        phone.send_to(b"late", a.local_addr().unwrap()).unwrap();
        let d = pump(&mut ring, 1, |_| None);
        assert_eq!(d.received, 0);
        // The slot is free again, and reused.
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(ring.add(b.as_raw_fd(), 6).unwrap(), slot);
    }

    #[test]
    fn a_full_socket_table_is_an_error_not_a_panic() {
        let mut ring = ring();
        let sockets: Vec<UdpSocket> = (0..9)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for (i, s) in sockets.iter().take(8).enumerate() {
            ring.add(s.as_raw_fd(), i as u64).unwrap();
        }
        let err = ring.add(sockets[8].as_raw_fd(), 8).unwrap_err();
        assert_eq!(err.to_string(), "io_uring socket table full");
        assert!(ring.add(sockets[0].as_raw_fd(), MAX_TOKEN + 1).is_err());
    }
}
