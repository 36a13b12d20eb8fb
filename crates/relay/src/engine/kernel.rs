//! The relay's side of the eBPF fast path ([`mediagate_ebpf`]): which streams go to
//! the kernel, and how what the kernel forwarded flows back into the streams' state.
//!
//! What it does: a stream's direction gets a kernel entry once both of its RTP latches
//! are confirmed (the sender's, which the entry's key names, and the receiver's, which
//! is where it sends), both relay ports have a specific address, all four addresses
//! are of one IP version (IPv4 or IPv6) and the stream is symmetric; RTP streams
//! forward only RTP with the SSRC the latch last saw. The forwarding threads call
//! [`KernelPath::update`] when a datagram changed its side's [`LatchView`] (a latch
//! confirmed or moved, or a new SSRC), which is whenever [`wanted`] may have changed:
//! the old entry goes, its counts merged, a new one is made.
//! [`KernelPath::sync`] (every tick of the engine's timer) and
//! [`KernelPath::remove_stream`] (when a stream's ports close, before its record is
//! written) add what the kernel counted since the last read to the leg's RTP counters
//! and tell its latch when the peer was last heard, so statistics, records, `ng`
//! query/list and the media timeout see kernel-forwarded packets as their own.
//!
//! [`KernelPath::sync`] reads the whole map in a few batched system calls before it
//! takes any lock, and locks the streams only to merge. It also moves entries whose
//! destination's route changed onto the new route, and every few seconds attaches
//! the program to interfaces created since the start (a veth or VLAN) and lets go of
//! those that vanished.
//!
//! What it does not: RTCP (it stays on the relay's sockets, which read its reports),
//! IPv4-IPv6 bridging (the kernel path does not translate headers), wildcard media
//! addresses, asymmetric streams or learning `off` (no confirmed latch): those stay in
//! user space. The counters lag the kernel by up to one tick (250 ms) except at a
//! stream's end.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mediagate_ebpf::{FastPath, FlowCounters, FlowKey, FlowReader, FlowSnapshot, FlowTarget};

use crate::calls::{lock as lock_media, SharedMedia};
use crate::media::{Leg, MediaPair};

/// One direction's kernel entry as the latches want it: datagrams from `key.from` to
/// `key.to` leave from `target.from` to `target.to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Want {
    key: FlowKey,
    from: SocketAddr,
    to: SocketAddr,
    rtp_ssrc: Option<u32>,
}

/// The entries a stream wants, indexed by the sending side.
pub(super) type Wanted = [Option<Want>; 2];

/// `a`, if it names one address and port (not a wildcard).
fn specific(a: SocketAddr) -> Option<SocketAddr> {
    (!a.ip().is_unspecified() && a.port() != 0).then_some(a)
}

/// The kernel entries `m`'s latches allow (module docs).
pub(super) fn wanted(m: &MediaPair) -> Wanted {
    let one = |side: usize| -> Option<Want> {
        let (sender, receiver) = (m.legs.get(side)?, m.legs.get(1 - side)?);
        let symmetric = |l: &Leg| l.rtp_latch.symmetric();
        if !symmetric(sender) || !symmetric(receiver) {
            return None;
        }
        let rtp_ssrc = if m.is_rtp {
            Some(sender.rtp_latch.latched_ssrc()?)
        } else {
            None
        };
        let want = Want {
            key: FlowKey {
                from: specific(sender.rtp_latch.confirmed()?)?,
                to: specific(sender.local)?,
            },
            from: specific(receiver.local)?,
            to: specific(receiver.rtp_latch.confirmed()?)?,
            rtp_ssrc,
        };
        // A bridged stream (IPv4 on one side, IPv6 on the other) stays in user space.
        let v6 = want.key.from.is_ipv6();
        [want.key.to, want.from, want.to]
            .iter()
            .all(|a| a.is_ipv6() == v6)
            .then_some(want)
    };
    [one(0), one(1)]
}

/// What a datagram arriving on one side can change of [`wanted`]: that side's RTP
/// latch's source and SSRC. A datagram changes nothing else [`wanted`] reads (the
/// other side's latch, the flags, the relay ports change by signalling, which brings
/// the entries up to date itself, and the tick's catch-all follows any change), so
/// comparing this pair with what it was at the last update tells a forwarding thread,
/// per datagram and without building the entries, whether they may be out of date.
pub(super) type LatchView = (Option<SocketAddr>, Option<u32>);

/// `m`'s [`LatchView`] of `side`.
pub(super) fn latch_view(m: &MediaPair, side: usize) -> LatchView {
    m.legs.get(side).map_or((None, None), |l| {
        (l.rtp_latch.confirmed(), l.rtp_latch.latched_ssrc())
    })
}

/// An entry in the kernel and the counts already merged into the stream.
#[derive(Debug, Clone, Copy)]
struct Installed {
    want: Want,
    merged: FlowCounters,
    /// Its number in [`KernelPath::installs`].
    number: u64,
}

struct KernelStream {
    media: SharedMedia,
    entries: [Option<Installed>; 2],
}

/// The loaded fast path and the streams that have entries in it.
pub(crate) struct KernelPath {
    fast: Mutex<FastPath>,
    /// Reads every entry's counters in a few system calls, without `fast`'s lock;
    /// `None` if the map's descriptor could not be duplicated (then each entry is
    /// read alone, under the locks).
    reader: Option<FlowReader>,
    streams: Mutex<HashMap<u64, KernelStream>>,
    /// Entries made so far (the last one's number). An entry numbered after a read
    /// of the map began may share its key with an entry the read saw (one replaced
    /// meanwhile), whose counts it must not take as its own.
    installs: AtomicU64,
    /// Entries the last read found: room for as many in the next.
    last_read: std::sync::atomic::AtomicUsize,
    /// Datagrams the kernel forwarded, as merged so far.
    pub(super) forwarded: AtomicU64,
    /// When interfaces were last scanned for ones that appeared or vanished.
    scanned: Mutex<Instant>,
}

/// How often [`KernelPath::sync`] looks for interfaces created or deleted since the
/// last look: a walk of `/sys/class/net` is cheap, and a new interface's first seconds
/// of media go through the relay's sockets meanwhile (nothing is lost).
const RESCAN_EVERY: Duration = Duration::from_secs(2);

impl std::fmt::Debug for KernelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelPath").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Converts the kernel's `CLOCK_MONOTONIC` stamp to an `Instant`, given the two
/// clocks read together as `now`.
fn instant_of(last_ns: u64, (now, now_ns): (Instant, u64)) -> Instant {
    now.checked_sub(Duration::from_nanos(now_ns.saturating_sub(last_ns)))
        .unwrap_or(now)
}

impl KernelPath {
    pub(super) fn new(fast: FastPath) -> Self {
        let reader = fast
            .reader()
            .map_err(|e| {
                tracing::warn!("relay: eBPF counters will be read one entry at a time: {e}");
            })
            .ok();
        Self {
            fast: Mutex::new(fast),
            reader,
            streams: Mutex::new(HashMap::new()),
            installs: AtomicU64::new(0),
            last_read: std::sync::atomic::AtomicUsize::new(0),
            forwarded: AtomicU64::new(0),
            scanned: Mutex::new(Instant::now()),
        }
    }

    /// Attaches the program to interfaces that appeared since the last scan and drops
    /// the links of those that vanished, at most every [`RESCAN_EVERY`]; whether it
    /// was due.
    fn rescan_if_due(&self, now: Instant) -> bool {
        {
            let mut scanned = lock(&self.scanned);
            if now.saturating_duration_since(*scanned) < RESCAN_EVERY {
                return false;
            }
            *scanned = now;
        }
        let change = lock(&self.fast).rescan();
        for name in change.attached {
            tracing::info!("relay: eBPF fast path attached to {name}, new since the last look");
        }
        for name in change.dropped {
            tracing::info!("relay: eBPF fast path let go of {name}, which vanished");
        }
        true
    }

    /// Moves entries whose destination's route changed onto the new route
    /// ([`FastPath::reroute`]), merging the replaced entries' final counts. Where the
    /// kernel sends route notifications this costs one system call when nothing
    /// changed, and runs every tick; otherwise it asks every entry's route, and runs
    /// only at the interface scans (`scan_due`).
    fn follow_routes(&self, scan_due: bool) {
        let mut streams = lock(&self.streams);
        let mut fast = lock(&self.fast);
        if !scan_due && !fast.follows_routes() {
            return;
        }
        let moved = fast.reroute();
        if moved.is_empty() {
            return;
        }
        let now = clocks();
        for m in moved {
            tracing::debug!(
                "relay: kernel entry {:?} follows its destination's new route",
                m.key
            );
            for stream in streams.values_mut() {
                for (side, slot) in stream.entries.iter_mut().enumerate() {
                    let Some(installed) = slot.filter(|i| i.want.key == m.key) else {
                        continue;
                    };
                    self.merge(&stream.media, side, &installed, m.last, now);
                    // A new entry (counting from zero), or none: the next sync's
                    // catch-all tries again.
                    *slot = m.reinstalled.then(|| Installed {
                        want: installed.want,
                        merged: FlowCounters::default(),
                        number: self.next_install(),
                    });
                }
            }
        }
    }

    /// Numbers an entry just written to the map (see [`KernelPath::installs`]).
    fn next_install(&self) -> u64 {
        self.installs.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The interfaces the program is attached to.
    pub(super) fn interfaces(&self) -> Vec<String> {
        lock(&self.fast).interfaces()
    }

    /// Stream `id` (started) may get kernel entries from now on.
    pub(super) fn register(&self, id: u64, media: &SharedMedia) {
        lock(&self.streams).insert(
            id,
            KernelStream {
                media: std::sync::Arc::clone(media),
                entries: [None, None],
            },
        );
    }

    /// Brings stream `id`'s kernel entries to what its latches want now; returns both
    /// sides' [`LatchView`]s they were made from (for the caller's cheap comparison).
    /// Must not be called with the stream's media lock held.
    pub(super) fn update(&self, id: u64, media: &SharedMedia) -> [LatchView; 2] {
        let (want, seen) = {
            let m = lock_media(media);
            (wanted(&m), [latch_view(&m, 0), latch_view(&m, 1)])
        };
        let mut streams = lock(&self.streams);
        // Closed meanwhile: nothing to install.
        let Some(stream) = streams.get_mut(&id) else {
            return seen;
        };
        let mut fast = lock(&self.fast);
        for (side, want) in want.iter().enumerate() {
            let Some(slot) = stream.entries.get_mut(side) else {
                continue;
            };
            if slot.map(|i| i.want) == *want {
                continue;
            }
            if let Some(old) = slot.take() {
                let last = fast.remove(old.want.key).unwrap_or(old.merged);
                self.merge(&stream.media, side, &old, last, clocks());
            }
            if let Some(w) = want {
                let target = FlowTarget {
                    from: w.from,
                    to: w.to,
                    rtp_ssrc: w.rtp_ssrc,
                };
                match fast.insert(w.key, target) {
                    Ok(()) => {
                        *slot = Some(Installed {
                            want: *w,
                            merged: FlowCounters::default(),
                            number: self.next_install(),
                        });
                    }
                    // A full map, or no route to the peer: this direction stays in
                    // user space.
                    Err(e) => tracing::debug!("relay: no kernel entry for {:?}: {e}", w.key),
                }
            }
        }
        seen
    }

    /// Merges what the kernel forwarded since the last read into every stream, and
    /// brings every stream's entries to what its latches want (a catch-all for changes
    /// no packet or signalling reported); follows interfaces that came or went, and
    /// routes that changed.
    ///
    /// The map is read first, in a few batched system calls and without the streams'
    /// or the map's lock, so the forwarding threads and the control plane never wait
    /// on it; the locks are taken only to merge.
    pub(super) fn sync(&self) {
        let scan_due = self.rescan_if_due(Instant::now());
        self.follow_routes(scan_due);
        let read_from = self.installs.load(Ordering::SeqCst);
        let expected = self.last_read.load(Ordering::Relaxed);
        let snapshot = self.reader.as_ref().and_then(|r| {
            r.snapshot_sized(expected)
                .map_err(|e| tracing::debug!("relay: eBPF batch read refused: {e}"))
                .ok()
        });
        if let Some(s) = &snapshot {
            self.last_read.store(s.len(), Ordering::Relaxed);
        }
        // After the read: the kernel's stamps in it are all before `now`.
        let now = clocks();
        let ids: Vec<(u64, SharedMedia)> = {
            let mut streams = lock(&self.streams);
            self.merge_all(&mut streams, snapshot.as_ref(), read_from, now);
            streams
                .iter()
                .filter(|(_, s)| {
                    let want = wanted(&lock_media(&s.media));
                    s.entries.iter().map(|e| e.map(|i| i.want)).ne(want)
                })
                .map(|(id, s)| (*id, std::sync::Arc::clone(&s.media)))
                .collect()
        };
        for (id, media) in ids {
            self.update(id, &media);
        }
    }

    /// Merges what `snapshot` (read once every entry numbered up to `read_from` was
    /// in the map) shows for each installed entry; without a snapshot, reads each
    /// entry now.
    fn merge_all(
        &self,
        streams: &mut HashMap<u64, KernelStream>,
        snapshot: Option<&FlowSnapshot>,
        read_from: u64,
        now: (Instant, u64),
    ) {
        let fast = snapshot.is_none().then(|| lock(&self.fast));
        for stream in streams.values_mut() {
            for (side, slot) in stream.entries.iter_mut().enumerate() {
                let Some(installed) = slot else { continue };
                let seen = match snapshot {
                    // Made after the read began: what the read shows under its key
                    // may be the entry it replaced (merged when that one went).
                    Some(_) if installed.number > read_from => continue,
                    Some(snapshot) => snapshot.get(installed.want.key),
                    None => fast.as_ref().and_then(|f| f.counters(installed.want.key)),
                };
                let Some(seen) = seen else { continue };
                // Counts only grow; a read older than what is merged adds nothing.
                if seen.packets > installed.merged.packets {
                    self.merge(&stream.media, side, installed, seen, now);
                    installed.merged = seen;
                }
            }
        }
    }

    /// Removes stream `id`'s entries and merges their final counts. Must not be called
    /// with the stream's media lock held.
    pub(super) fn remove_stream(&self, id: u64) {
        let Some(stream) = lock(&self.streams).remove(&id) else {
            return;
        };
        let now = clocks();
        let mut fast = lock(&self.fast);
        for (side, installed) in stream.entries.iter().enumerate() {
            if let Some(installed) = installed {
                let last = fast.remove(installed.want.key).unwrap_or(installed.merged);
                self.merge(&stream.media, side, installed, last, now);
            }
        }
    }

    /// Adds `seen` less what was already merged to `side`'s RTP counters.
    fn merge(
        &self,
        media: &SharedMedia,
        side: usize,
        installed: &Installed,
        seen: FlowCounters,
        now: (Instant, u64),
    ) {
        let packets = seen.packets.saturating_sub(installed.merged.packets);
        if packets == 0 {
            return;
        }
        let bytes = seen.bytes.saturating_sub(installed.merged.bytes);
        self.forwarded.fetch_add(packets, Ordering::Relaxed);
        let mut m = lock_media(media);
        let Some(leg) = m.legs.get_mut(side) else {
            return;
        };
        leg.rtp.packets += packets;
        leg.rtp.bytes += bytes;
        if let Some(last_ns) = seen.last_ns {
            let at = instant_of(last_ns, now);
            leg.rtp.last_packet = leg.rtp.last_packet.max(Some(at));
            leg.rtp_latch
                .heard(installed.want.key.from, seen.last_seq, at);
        }
    }
}

fn clocks() -> (Instant, u64) {
    (Instant::now(), mediagate_ebpf::monotonic_ns())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latch::{Expectation, LatchPolicy};
    use mediagate_ng::request::Learning;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(b"media");
        p
    }

    fn pair(now: Instant) -> MediaPair {
        pair_of(
            now,
            ["192.0.2.1:30000", "192.0.2.1:30002"],
            ["10.0.0.1:4000", "10.0.0.2:5000"],
        )
    }

    /// Relay ports `locals` for phones `phones` (side 0, side 1).
    fn pair_of(now: Instant, locals: [&str; 2], phones: [&str; 2]) -> MediaPair {
        let leg = |local: &str, phone: &str| {
            let mut l = Leg::new(addr(local), addr(local).ip(), LatchPolicy::default(), now);
            l.rtp_latch.signal(
                Learning::Heuristic,
                Expectation {
                    endpoint: Some(addr(phone)),
                    source_ip: None,
                },
                now,
            );
            l
        };
        MediaPair {
            index: 0,
            media_type: "audio".into(),
            proto: "RTP/AVP".into(),
            is_rtp: true,
            legs: [leg(locals[0], phones[0]), leg(locals[1], phones[1])],
        }
    }

    #[test]
    fn entries_are_wanted_once_both_sides_are_latched_and_follow_the_latch() {
        let now = Instant::now();
        let mut m = pair(now);
        use crate::media::Component::Rtp;
        assert_eq!(wanted(&m), [None, None]);
        m.on_datagram(0, Rtp, addr("10.0.0.1:4000"), &rtp(11, 1), now);
        assert_eq!(wanted(&m), [None, None], "one side latched is not enough");
        m.on_datagram(1, Rtp, addr("10.0.0.2:5000"), &rtp(22, 1), now);
        let [a, b] = wanted(&m);
        let a = a.unwrap();
        assert_eq!(a.key.from, "10.0.0.1:4000".parse().unwrap());
        assert_eq!(a.key.to, "192.0.2.1:30000".parse().unwrap());
        assert_eq!(a.from, "192.0.2.1:30002".parse().unwrap());
        assert_eq!(a.to, "10.0.0.2:5000".parse().unwrap());
        assert_eq!(a.rtp_ssrc, Some(11));
        assert_eq!(b.unwrap().rtp_ssrc, Some(22));
        // B's NAT rebinds (same SSRC, after the quiet time): both entries follow.
        let later = now + Duration::from_secs(2);
        m.on_datagram(1, Rtp, addr("10.0.0.2:5999"), &rtp(22, 2), later);
        let [a2, b2] = wanted(&m);
        assert_eq!(a2.unwrap().to, "10.0.0.2:5999".parse().unwrap());
        assert_eq!(b2.unwrap().key.from, "10.0.0.2:5999".parse().unwrap());
    }

    #[test]
    fn wildcard_relay_ports_and_asymmetric_streams_stay_in_user_space() {
        let now = Instant::now();
        let mut m = pair(now);
        use crate::media::Component::Rtp;
        m.legs[1].local = addr("0.0.0.0:30002");
        m.on_datagram(0, Rtp, addr("10.0.0.1:4000"), &rtp(11, 1), now);
        m.on_datagram(1, Rtp, addr("10.0.0.2:5000"), &rtp(22, 1), now);
        assert_eq!(wanted(&m), [None, None], "a wildcard relay port");
        m.legs[1].local = addr("192.0.2.1:30002");
        assert!(wanted(&m)[0].is_some());
        m.legs[1].rtp_latch.set_flags(true, false);
        assert_eq!(wanted(&m), [None, None], "asymmetric");
    }

    #[test]
    fn ipv6_streams_get_entries_and_bridged_ones_stay_in_user_space() {
        use crate::media::Component::Rtp;
        let now = Instant::now();
        let mut m = pair_of(
            now,
            ["[2001:db8::7]:30000", "[2001:db8::7]:30002"],
            ["[2001:db8::1]:4000", "[2001:db8::2]:5000"],
        );
        m.on_datagram(0, Rtp, addr("[2001:db8::1]:4000"), &rtp(11, 1), now);
        m.on_datagram(1, Rtp, addr("[2001:db8::2]:5000"), &rtp(22, 1), now);
        let [a, b] = wanted(&m);
        let a = a.expect("an IPv6 entry");
        assert_eq!(a.key.to, addr("[2001:db8::7]:30000"));
        assert_eq!(a.to, addr("[2001:db8::2]:5000"));
        assert!(b.is_some());

        // The callee on IPv4 behind an IPv4 relay port: bridged both ways.
        let mut m = pair_of(
            now,
            ["[2001:db8::7]:30000", "192.0.2.1:30002"],
            ["[2001:db8::1]:4000", "10.0.0.2:5000"],
        );
        m.on_datagram(0, Rtp, addr("[2001:db8::1]:4000"), &rtp(11, 1), now);
        m.on_datagram(1, Rtp, addr("10.0.0.2:5000"), &rtp(22, 1), now);
        assert!(m.legs[1].rtp_latch.confirmed().is_some(), "latched");
        assert_eq!(wanted(&m), [None, None]);
    }

    /// Whatever a datagram changes of the wanted entries, it changes the latch view
    /// of the side it arrived on: the forwarding threads' cheap check misses nothing.
    #[test]
    fn a_datagram_that_changes_the_wanted_entries_changes_its_sides_latch_view() {
        use crate::media::Component::{Rtcp, Rtp};
        let now = Instant::now();
        let later = now + Duration::from_secs(2);
        let mut m = pair(now);
        let steps: &[(usize, crate::media::Component, &str, Vec<u8>, Instant)] = &[
            (0, Rtp, "10.0.0.1:4000", rtp(11, 1), now),
            (0, Rtp, "10.0.0.1:4000", rtp(11, 2), now),
            (
                1,
                Rtcp,
                "10.0.0.2:5001",
                vec![0x80, 201, 0, 1, 0, 0, 0, 22],
                now,
            ),
            (1, Rtp, "10.0.0.2:5000", rtp(22, 1), now),
            (1, Rtp, "10.0.0.9:7000", rtp(99, 1), now),
            // The same source with a new SSRC: the entry must filter on it.
            (0, Rtp, "10.0.0.1:4000", rtp(12, 3), now),
            // B's NAT rebinds.
            (1, Rtp, "10.0.0.2:5999", rtp(22, 2), later),
            (0, Rtp, "10.0.0.1:4000", rtp(12, 4), later),
        ];
        let mut changes = 0;
        for (side, component, src, data, at) in steps {
            let (want, view) = (wanted(&m), latch_view(&m, *side));
            m.on_datagram(*side, *component, addr(src), data, *at);
            if wanted(&m) != want {
                changes += 1;
                assert_ne!(
                    latch_view(&m, *side),
                    view,
                    "{src} on side {side} changed the entries unseen"
                );
            }
        }
        assert_eq!(changes, 3, "both latched, a new SSRC, a NAT rebind");
    }

    #[test]
    fn the_kernel_clock_maps_onto_instants() {
        let now = Instant::now();
        let at = instant_of(1_000_000_000, (now, 1_250_000_000));
        assert_eq!(now - at, Duration::from_millis(250));
        assert_eq!(instant_of(2_000_000_000, (now, 1_000_000_000)), now);
    }
}
