//! Playout groups: the hit viewers of one object that play from the same place are
//! paced by one timer and sent each batch together (issue 13, performance).
//!
//! A viewer that has been sent nothing yet (its first PLAY, or a PLAY after a seek
//! before anything went out) joins the open group of its object version and start
//! (the block it starts with), or opens one. The group numbers its packets once (one
//! SSRC, sequence and timestamp mapping for all members, so every member's PLAY
//! answer names the same `RTP-Info` and `Range`), copies each packet once, and sends
//! each batch to every member: UDP members with one `sendmmsg` per track and socket,
//! from the RTP socket whose port the member's SETUP answer named. On a caching route
//! that is the pair all UDP viewers of the URL's track share (`shared_pairs`), so the
//! whole group is one call per track, as a live hub's viewers are (one socket per
//! member, with one io_uring submission for all of them, measured no cheaper: the
//! per-socket kernel work stayed). Interleaved members get the shared packet queued
//! on each connection, as the hub does for a live stream. A group takes
//! joiners for [`JOIN_WINDOW`] after it started (and while what it sent so far fits
//! [`MAX_HISTORY`]). Every member, the first too, is sent nothing until its session
//! says its PLAY answer is queued; it is then sent what the group sent until then,
//! starting at the group's keyframe, and follows it.
//!
//! A viewer that resumes (after PAUSE, or after a seek once it was sent something)
//! keeps its own numbering, so it cannot take a group's: it joins a group of the same
//! object version that sent, or is about to send, its next packet (a viewer that
//! paused a batch later than the one that opened the group waits for the group to
//! get there, which it does at once: a group sends a lead ahead), or opens one that
//! later resumers can join. Such a member gets the group's packets with its own
//! 12-byte RTP header (its SSRC, and sequence numbers and timestamps at fixed offsets
//! from the group's, [`Own`]), so a packet is still numbered once; on UDP that header
//! costs it a copy of each datagram. Its sender reports are its own.
//!
//! What stays per member: its destinations, its counters, its RTCP (sender reports go
//! out from the RTCP port its SETUP answer named, and its receiver reports arrive
//! there, credited to it by their source address), and the end of
//! the range (its own continuation at the origin, or a BYE). A member leaves on PAUSE,
//! seek, a new PLAY or when its session goes, and goes on alone (`cache_play::run`)
//! from the first packet it was not sent, with its numbering; so does an
//! interleaved member whose connection cannot take a batch (a slow viewer slows only
//! itself, as before), and every member at the end of the range.
//!
//! What it does not: merge viewers that are at different places into a group, or
//! send a member from any socket but the one its SETUP answer named.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::*;

/// How long after its start a group takes joiners.
const JOIN_WINDOW: Duration = Duration::from_secs(1);
/// Packets a group keeps for joiners, at most; it closes to joiners beyond that.
const MAX_HISTORY: usize = 1024;

/// Which group a viewer may join: the same object version, starting at the same block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    key: ObjectKey,
    version: u64,
    start_ms: u64,
    clocks: Vec<u32>,
    /// It started at a keyframe with a numbering of its own (first PLAYs join only
    /// such a group); false for a group a resumed viewer opened.
    fresh: bool,
}

/// The groups of one cache store that take joiners.
#[derive(Debug, Default)]
pub(crate) struct PlayoutGroups {
    open: Mutex<HashMap<GroupKey, Arc<Handle>>>,
    next_id: AtomicU64,
    /// PLAYs that opened a group, joined one, or went alone.
    opened: AtomicU64,
    joined: AtomicU64,
    alone: AtomicU64,
}

/// How hit viewers' PLAYs were served (the ops metrics show them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupCounts {
    /// PLAYs that opened a playout group.
    pub opened: u64,
    /// PLAYs that joined a group another viewer opened (first PLAYs and resumes).
    pub joined: u64,
    /// PLAYs served by a task of their own (pending packets of a slow viewer, or
    /// after the end of the range).
    pub alone: u64,
}

/// An open group as joiners see it.
#[derive(Debug)]
struct Handle {
    id: u64,
    cmds: mpsc::UnboundedSender<Cmd>,
    /// What the PLAY answer of every member says.
    start: PlayStart,
}

#[derive(Debug)]
enum Cmd {
    /// A viewer joins; the answer says whether the group took it (it no longer takes
    /// joiners otherwise).
    Join(Member, oneshot::Sender<bool>),
    /// The member with this id leaves.
    Leave(u64),
    /// The answer to the PLAY of the member with this id is queued: it may get media.
    Open(u64),
    /// A viewer resumes (after PAUSE or a seek) with its own numbering: the group
    /// takes it when its next packet is the group's or one the group keeps for
    /// joiners, and hands its state back otherwise.
    Resume(Member, Box<Resumer>, oneshot::Sender<bool>),
}

/// What a group needs to know of a resuming viewer.
#[derive(Debug)]
struct Resumer {
    /// The packet it plays next (as the shared block holds it: its identity).
    next: Bytes,
    /// Its media time, ms.
    next_ms: u64,
    /// Where it is (a copy: the viewer keeps its own until the group took it).
    state: State,
}

#[derive(Debug)]
struct Member {
    id: u64,
    out: PlayerOut,
    /// Where the member's own state goes when it leaves the group.
    done: oneshot::Sender<Handoff>,
    /// Since when it waits for its PLAY answer to be queued (it is sent nothing
    /// until then); None once it gets media.
    waiting: Option<Instant>,
    /// Where in the group's history its media starts (0: the group's keyframe).
    from: usize,
    /// Its numbering, when it is not the group's (a resumed viewer).
    own: Option<Own>,
    /// A resumed viewer whose next packet the group has not reached yet: it gets
    /// nothing until then.
    ahead: Option<Resumer>,
    /// Per track, its UDP socket and destination (copied out of `out`, so that
    /// sending to many members reads only the group's memory).
    udp: Vec<Option<(RawFd, SocketAddr)>>,
    /// It has an interleaved track.
    interleaved: bool,
}

/// A member's own numbering as offsets from the group's: per track, its sequence
/// numbers, timestamps and counts minus the group's (wrapping), and its SSRCs. A
/// packet's header is the group's with these applied (12 bytes per member), so the
/// group still numbers each packet once.
#[derive(Debug)]
struct Own {
    /// Its rewriter when it joined (SSRCs, timestamp bases, shift).
    base: Rewriter,
    dseq: Vec<u16>,
    dts: Vec<u32>,
    dpackets: Vec<u32>,
    doctets: Vec<u32>,
    /// Its shift minus the group's, ms.
    dshift_ms: i64,
}

impl Own {
    /// `own` takes its next packet where the group's numbering stands at `group`
    /// minus `after` (per track: packets and payload octets the group numbered
    /// since that packet).
    fn new(own: Rewriter, group: &Rewriter, after: &[(u32, u32)]) -> Own {
        let n = own.tracks.len().min(group.tracks.len());
        let (mut dseq, mut dts, mut dpackets, mut doctets) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for slot in 0..n {
            let (o, g) = (&own.tracks[slot], &group.tracks[slot]);
            let (cnt, oct) = after.get(slot).copied().unwrap_or((0, 0));
            dseq.push(o.next_seq.wrapping_sub(g.next_seq.wrapping_sub(cnt as u16)));
            dts.push(
                own.rtptime_at_us(slot, 0)
                    .unwrap_or(0)
                    .wrapping_sub(group.rtptime_at_us(slot, 0).unwrap_or(0)),
            );
            dpackets.push(o.packets.wrapping_sub(g.packets.wrapping_sub(cnt)));
            doctets.push(o.octets.wrapping_sub(g.octets.wrapping_sub(oct)));
        }
        Own {
            dshift_ms: own.shift_ms - group.shift_ms,
            base: own,
            dseq,
            dts,
            dpackets,
            doctets,
        }
    }

    /// The member's header for a group packet of track `slot` with header `head`.
    fn apply(&self, slot: usize, head: &mut [u8; RTP_FIXED]) {
        let (Some(dseq), Some(dts), Some(t)) = (
            self.dseq.get(slot),
            self.dts.get(slot),
            self.base.tracks.get(slot),
        ) else {
            return;
        };
        let seq = u16::from_be_bytes([head[2], head[3]]).wrapping_add(*dseq);
        let ts = u32::from_be_bytes([head[4], head[5], head[6], head[7]]).wrapping_add(*dts);
        head[2..4].copy_from_slice(&seq.to_be_bytes());
        head[4..8].copy_from_slice(&ts.to_be_bytes());
        head[8..12].copy_from_slice(&t.ssrc.to_be_bytes());
    }

    /// The member's copy of a group packet (a UDP datagram is one buffer).
    fn copy(&self, slot: usize, d: &Bytes) -> Bytes {
        let Some((mut head, rest)) = split_whole(d) else {
            return d.clone();
        };
        self.apply(slot, &mut head);
        let mut b = BytesMut::with_capacity(d.len());
        b.extend_from_slice(&head);
        b.extend_from_slice(&rest);
        b.freeze()
    }

    /// The member's numbering while the group's is `group`.
    fn rewriter(&self, group: &Rewriter) -> Rewriter {
        let mut r = self.base.clone();
        for (slot, t) in r.tracks.iter_mut().enumerate() {
            let Some(g) = group.tracks.get(slot) else {
                continue;
            };
            t.next_seq = g.next_seq.wrapping_add(self.dseq[slot]);
            t.packets = g.packets.wrapping_add(self.dpackets[slot]);
            t.octets = g.octets.wrapping_add(self.doctets[slot]);
        }
        r.last_out_ms = match (self.base.last_out_ms, group.last_out_ms) {
            (Some(a), Some(b)) => Some(a.max(b + self.dshift_ms)),
            (a, b) => a.or(b.map(|b| b + self.dshift_ms)),
        };
        r
    }
}

impl Member {
    /// A member playing to `out`, waiting for its PLAY answer to be queued.
    fn new(id: u64, out: PlayerOut, done: oneshot::Sender<Handoff>) -> Member {
        let udp = out
            .dests
            .iter()
            .map(|d| match d {
                Some((TrackDest::Udp { rtp, .. }, Some(pair))) => {
                    Some((pair.rtp.as_raw_fd(), *rtp))
                }
                _ => None,
            })
            .collect();
        let interleaved = out
            .dests
            .iter()
            .any(|d| matches!(d, Some((TrackDest::Interleaved { .. }, _))));
        Member {
            id,
            out,
            done,
            waiting: Some(Instant::now()),
            from: 0,
            own: None,
            ahead: None,
            udp,
            interleaved,
        }
    }

    /// Where this member is: the group's cursor with its own numbering.
    fn state(&self, group: &State) -> State {
        if let Some(r) = &self.ahead {
            return r.state.snapshot();
        }
        let mut s = group.snapshot();
        if let Some(own) = &self.own {
            s.rewriter = own.rewriter(&group.rewriter);
        }
        s
    }

    /// The member's copy of a group packet of track `slot`.
    fn copy(&self, slot: usize, d: &Bytes) -> Bytes {
        match &self.own {
            Some(own) => own.copy(slot, d),
            None => d.clone(),
        }
    }

    /// The group got to the packet this member (ahead of it) plays next: from there
    /// on it gets the group's packets under its own numbering; `after` as in
    /// [`Own::new`].
    fn reached(&mut self, group: &Rewriter, after: &[(u32, u32)]) {
        if let Some(r) = self.ahead.take() {
            self.own = Some(Own::new(r.state.rewriter.clone(), group, after));
        }
    }

    /// Each track's sender report for now, in the member's numbering.
    fn sender_reports(&self, group: &State, start_ms: u64, wall0: Instant) -> Vec<(usize, Bytes)> {
        match &self.own {
            Some(own) => sender_reports(&own.rewriter(&group.rewriter), group, start_ms, wall0),
            None => sender_reports(&group.rewriter, group, start_ms, wall0),
        }
    }
}

/// How a member leaves its group.
#[derive(Debug)]
enum Handoff {
    /// Stopped: it resumes from this state.
    Paused(State),
    /// A task of its own serves it now (a slow member, or the end of the range).
    Alone(oneshot::Sender<()>, JoinHandle<State>),
}

/// A viewer's place in a group; dropping it leaves the group.
#[derive(Debug)]
pub(crate) struct Seat {
    id: u64,
    cmds: mpsc::UnboundedSender<Cmd>,
    done: Option<oneshot::Receiver<Handoff>>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Leave(self.id));
    }
}

impl Seat {
    /// Leaves the group; returns where the viewer is (its next packet and numbering).
    pub(super) async fn leave(mut self) -> Option<State> {
        let done = self.done.take()?;
        let _ = self.cmds.send(Cmd::Leave(self.id));
        match done.await.ok()? {
            Handoff::Paused(state) => Some(state),
            Handoff::Alone(stop, task) => {
                let _ = stop.send(());
                task.await.ok()
            }
        }
    }
}

impl PlayoutGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, Arc<Handle>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Plays `state` (fresh: nothing sent under it) to `out` in a group: an open one at
    /// the same place, whose numbering the viewer then takes, or a new one.
    pub(super) async fn play(
        self: &Arc<Self>,
        state: State,
        out: PlayerOut,
        position: u64,
    ) -> (PlayStart, Seat, AnswerQueued) {
        let key = GroupKey {
            key: state.feed.obj.key.clone(),
            version: state.feed.obj.version,
            start_ms: state.position_ms,
            clocks: state.clocks.clone(),
            fresh: true,
        };
        let open = self.lock().get(&key).cloned();
        if let Some(h) = open {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (done_tx, done_rx) = oneshot::channel();
            let (ok_tx, ok_rx) = oneshot::channel();
            let member = Member::new(id, out.clone(), done_tx);
            if h.cmds.send(Cmd::Join(member, ok_tx)).is_ok() && ok_rx.await == Ok(true) {
                let seat = Seat {
                    id,
                    cmds: h.cmds.clone(),
                    done: Some(done_rx),
                };
                self.joined.fetch_add(1, Ordering::Relaxed);
                return (h.start.clone(), seat, opener(&h.cmds, id));
            }
            self.close(&key, h.id);
        }
        self.open_group(key, state, out, position)
    }

    /// Plays `state` (a resume after PAUSE or a seek: the viewer has its own
    /// numbering) to `out` in a group: one of the same object version whose next
    /// packet is the viewer's or that still keeps it for joiners (the viewer gets
    /// the group's packets under its own numbering), or a new one that later
    /// resumers at the same place can join.
    pub(super) async fn resume(
        self: &Arc<Self>,
        mut state: State,
        out: PlayerOut,
        position: u64,
    ) -> (PlayStart, Seat, AnswerQueued) {
        let start = start_of(&state, position);
        let next = match state.feed.ready().await {
            Ok(()) => state.feed.peek().map(|p| {
                (
                    p.rtp.clone(),
                    media_ms(p.media_ticks, clock_of(&state.clocks, p.track)),
                )
            }),
            Err(_) => None,
        };
        let candidates: Vec<Arc<Handle>> = {
            let open = self.lock();
            let mut c: Vec<(u64, Arc<Handle>)> = open
                .iter()
                .filter(|(k, _)| {
                    k.key == state.feed.obj.key
                        && k.version == state.feed.obj.version
                        && k.clocks == state.clocks
                        && k.start_ms <= position
                })
                .map(|(_, h)| (h.id, h.clone()))
                .collect();
            // The newest first: it is the likeliest to still hold the viewer's place.
            c.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
            c.into_iter().map(|(_, h)| h).collect()
        };
        for h in candidates {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (done_tx, done_rx) = oneshot::channel();
            let (ok_tx, ok_rx) = oneshot::channel();
            let member = Member::new(id, out.clone(), done_tx);
            let Some((next, next_ms)) = next.clone() else {
                break;
            };
            let resumer = Resumer {
                next,
                next_ms,
                state: state.snapshot(),
            };
            if h.cmds
                .send(Cmd::Resume(member, Box::new(resumer), ok_tx))
                .is_ok()
                && ok_rx.await == Ok(true)
            {
                let seat = Seat {
                    id,
                    cmds: h.cmds.clone(),
                    done: Some(done_rx),
                };
                self.joined.fetch_add(1, Ordering::Relaxed);
                return (start, seat, opener(&h.cmds, id));
            }
        }
        let key = GroupKey {
            key: state.feed.obj.key.clone(),
            version: state.feed.obj.version,
            start_ms: position,
            clocks: state.clocks.clone(),
            fresh: false,
        };
        self.open_group(key, state, out, position)
    }

    /// Opens a group for `state` (its first member plays to `out`) and lists it for
    /// joiners under `key`.
    fn open_group(
        self: &Arc<Self>,
        key: GroupKey,
        state: State,
        out: PlayerOut,
        position: u64,
    ) -> (PlayStart, Seat, AnswerQueued) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let start = start_of(&state, position);
        let gid = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (cmds, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let first = Member::new(id, out, done_tx);
        self.lock().insert(
            key.clone(),
            Arc::new(Handle {
                id: gid,
                cmds: cmds.clone(),
                start: start.clone(),
            }),
        );
        let group = Group {
            groups: self.clone(),
            key,
            gid,
            members: Vec::new(),
            history: Some(Vec::new()),
            history_at: Vec::new(),
            joinable: true,
            sender: BatchSender::new(GsoMode::Auto),
        };
        tokio::spawn(group.run(state, position, first, rx));
        let answered = opener(&cmds, id);
        let seat = Seat {
            id,
            cmds,
            done: Some(done_rx),
        };
        (start, seat, answered)
    }

    /// The group `gid` takes no more joiners.
    fn close(&self, key: &GroupKey, gid: u64) {
        let mut open = self.lock();
        if open.get(key).is_some_and(|h| h.id == gid) {
            open.remove(key);
        }
    }

    /// A PLAY served by a task of its own.
    pub(super) fn count_alone(&self) {
        self.alone.fetch_add(1, Ordering::Relaxed);
    }

    /// How PLAYs were served so far.
    pub(crate) fn counts(&self) -> GroupCounts {
        GroupCounts {
            opened: self.opened.load(Ordering::Relaxed),
            joined: self.joined.load(Ordering::Relaxed),
            alone: self.alone.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.lock().len()
    }
}

/// A packet as every member gets it.
type Numbered = (usize, Bytes);

/// One track's datagrams of a batch, and their bytes.
type Datagrams<'a> = (Vec<&'a [u8]>, u64);

/// The group task's own state.
struct Group {
    groups: Arc<PlayoutGroups>,
    key: GroupKey,
    gid: u64,
    members: Vec<Member>,
    /// What was sent so far, for members that wait for their PLAY answer; None once
    /// it takes no joiners and none waits.
    history: Option<Vec<Numbered>>,
    /// Per entry of `history`: the packet as the shared block holds it, so a
    /// resuming viewer's next packet can be found in it.
    history_at: Vec<Bytes>,
    /// It takes joiners.
    joinable: bool,
    sender: BatchSender,
}

/// How a member took a batch.
enum Took {
    All,
    /// Its connection took only this many of the batch's packets for it.
    Part(usize),
    /// Its connection is closed.
    Gone,
}

impl Group {
    /// Sends packets as they fall due to every member until the range ends or every
    /// member left.
    async fn run(
        mut self,
        mut state: State,
        start_ms: u64,
        first: Member,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
    ) {
        let wall0 = Instant::now();
        let close_at = wall0 + JOIN_WINDOW;
        let mut next_sr = wall0 + FIRST_SR;
        self.add(first);
        loop {
            while let Ok(cmd) = cmds.try_recv() {
                self.on_cmd(cmd, &state, start_ms, wall0).await;
            }
            if self.joinable && Instant::now() >= close_at {
                self.stop_joins();
            }
            // A session that never said its answer was queued gets media anyway.
            while let Some(i) = self
                .members
                .iter()
                .position(|m| m.waiting.is_some_and(|t| t.elapsed() >= ANSWER_WAIT))
            {
                self.open(i, &state, start_ms, wall0).await;
            }
            if !self.joinable && self.members.iter().all(|m| m.waiting.is_none()) {
                self.history = None;
                self.history_at = Vec::new();
            }
            if self.members.is_empty() {
                break;
            }
            let mut batch: Vec<Numbered> = Vec::new();
            let mut batch_at: Vec<Bytes> = Vec::new();
            let mut ended = false;
            loop {
                // Members come and go only between packets: the cursor is then at
                // the first packet none of them was sent.
                let ready = if batch.is_empty() {
                    tokio::select! {
                        biased;
                        cmd = cmds.recv() => {
                            let Some(cmd) = cmd else { return self.finish() };
                            self.on_cmd(cmd, &state, start_ms, wall0).await;
                            if self.members.is_empty() {
                                return self.finish();
                            }
                            continue;
                        }
                        r = state.feed.ready() => r,
                    }
                } else {
                    state.feed.ready().await
                };
                let Some(p) = ready.ok().and_then(|()| state.feed.peek()) else {
                    ended = true;
                    break;
                };
                let ms = media_ms(p.media_ticks, clock_of(&state.clocks, p.track));
                let when = due(wall0, start_ms, ms);
                if when > Instant::now() + BATCH_WINDOW {
                    if !batch.is_empty() {
                        break;
                    }
                    tokio::select! {
                        biased;
                        cmd = cmds.recv() => {
                            let Some(cmd) = cmd else { return self.finish() };
                            self.on_cmd(cmd, &state, start_ms, wall0).await;
                            if self.members.is_empty() {
                                return self.finish();
                            }
                            continue;
                        }
                        () = tokio::time::sleep_until(when) => {}
                    }
                }
                state.position_ms = ms;
                let slot = usize::from(p.track);
                if let Some(d) = state.rewriter.rewrite(p) {
                    batch.push((slot, d));
                    batch_at.push(p.rtp.clone());
                }
                state.feed.advance();
                if batch.len() >= MAX_BATCH {
                    break;
                }
            }
            self.send_all(&batch, &batch_at, &state, start_ms, wall0)
                .await;
            if let Some(h) = &mut self.history {
                h.extend(batch);
                self.history_at.extend(batch_at);
                if h.len() > MAX_HISTORY {
                    self.stop_joins();
                }
            }
            if ended {
                while let Some(i) = self.members.iter().position(|m| m.waiting.is_some()) {
                    self.open(i, &state, start_ms, wall0).await;
                }
                state.ended = true;
                self.end_of_range(&state, media_us_at(start_ms, wall0, Instant::now()));
                return self.finish();
            }
            let now = Instant::now();
            if now >= next_sr {
                next_sr = now + SR_INTERVAL;
                let reports = sender_reports(&state.rewriter, &state, start_ms, wall0);
                for m in self
                    .members
                    .iter()
                    .filter(|m| m.waiting.is_none() && m.ahead.is_none())
                {
                    let own;
                    let reports = if m.own.is_some() {
                        own = m.sender_reports(&state, start_ms, wall0);
                        &own
                    } else {
                        &reports
                    };
                    for (slot, sr) in reports {
                        send_rtcp_now(&m.out, *slot, sr);
                    }
                }
            }
        }
        self.finish();
    }

    fn stop_joins(&mut self) {
        self.joinable = false;
        self.groups.close(&self.key, self.gid);
    }

    fn finish(&mut self) {
        self.stop_joins();
    }

    async fn on_cmd(&mut self, cmd: Cmd, state: &State, start_ms: u64, wall0: Instant) {
        match cmd {
            Cmd::Join(member, ok) => {
                if !self.joinable {
                    let _ = ok.send(false);
                    return;
                }
                let _ = ok.send(true);
                self.add(member);
            }
            Cmd::Resume(mut member, resumer, ok) => {
                if !self.joinable {
                    let _ = ok.send(false);
                    return;
                }
                if let Some(from) = self.place_of(&resumer.next, state) {
                    member.from = from;
                    let history = self.history.as_deref().unwrap_or_default();
                    let after = counts_after(history.get(from..).unwrap_or_default(), state);
                    member.own = Some(Own::new(
                        resumer.state.rewriter.clone(),
                        &state.rewriter,
                        &after,
                    ));
                } else {
                    // A little ahead of the group (it paused a batch later than the
                    // one that opened it): it waits for the group to get there, which
                    // sends that far ahead at once.
                    let next_ms = state
                        .feed
                        .peek()
                        .map(|p| media_ms(p.media_ticks, clock_of(&state.clocks, p.track)));
                    let reach = u64::try_from((LEAD + BATCH_WINDOW).as_millis()).unwrap_or(0);
                    if !next_ms
                        .is_some_and(|g| g <= resumer.next_ms && resumer.next_ms <= g + reach)
                    {
                        let _ = ok.send(false);
                        return;
                    }
                    member.from = self.history.as_ref().map_or(0, Vec::len);
                    member.ahead = Some(*resumer);
                }
                let _ = ok.send(true);
                self.add(member);
            }
            Cmd::Open(id) => {
                if let Some(i) = self.members.iter().position(|m| m.id == id) {
                    self.open(i, state, start_ms, wall0).await;
                }
            }
            Cmd::Leave(id) => {
                // One that leaves before it got anything gets what it was promised
                // first (its answer is queued by now: it asks after it).
                if let Some(i) = self.members.iter().position(|m| m.id == id) {
                    self.open(i, state, start_ms, wall0).await;
                }
                if let Some(i) = self.members.iter().position(|m| m.id == id) {
                    let m = self.members.swap_remove(i);
                    let paused = m.state(state);
                    let _ = m.done.send(Handoff::Paused(paused));
                }
            }
        }
    }

    /// Where a resuming viewer whose next packet is `next` would start: the index in
    /// the history of that packet, or the history's end when it is the group's own
    /// next packet; None when the group does not have it.
    fn place_of(&self, next: &Bytes, state: &State) -> Option<usize> {
        let history = self.history.as_ref()?;
        if state.feed.peek().is_some_and(|p| same_packet(&p.rtp, next)) {
            return Some(history.len());
        }
        self.history_at.iter().position(|b| same_packet(b, next))
    }

    /// A new member, waiting for its PLAY answer to be queued.
    fn add(&mut self, member: Member) {
        self.members.push(member);
    }

    /// Member `i`'s PLAY answer is queued: it is sent what the group sent so far, then
    /// gets what all get.
    async fn open(&mut self, i: usize, state: &State, start_ms: u64, wall0: Instant) {
        if self.members[i].waiting.take().is_none() {
            return;
        }
        if let Some(r) = &self.members[i].ahead {
            // The group may have got to its packet while it waited for its answer.
            match self.history_at.iter().position(|b| same_packet(b, &r.next)) {
                Some(at) => {
                    let history = self.history.as_deref().unwrap_or_default();
                    let after = counts_after(history.get(at..).unwrap_or_default(), state);
                    self.members[i].reached(&state.rewriter, &after);
                    self.members[i].from = at;
                }
                None => return,
            }
        }
        let from = self.members[i].from;
        let history: Vec<Numbered> = self
            .history
            .as_deref()
            .and_then(|h| h.get(from..))
            .unwrap_or_default()
            .to_vec();
        if history.is_empty() {
            return;
        }
        let took = self.send_to(&history, &[i]).await;
        // Sender reports went out already: the joiner gets its own at once, so it
        // can sync its tracks as early as the others.
        if Instant::now() >= wall0 + FIRST_SR {
            for (slot, sr) in self.members[i].sender_reports(state, start_ms, wall0) {
                send_rtcp_now(&self.members[i].out, slot, &sr);
            }
        }
        if let Some(took) = took.into_iter().next() {
            self.settle(i, took, &history, state, start_ms, wall0);
        }
    }

    /// Sends `batch` to every member; those that could not take it go on alone.
    async fn send_all(
        &mut self,
        batch: &[Numbered],
        batch_at: &[Bytes],
        state: &State,
        start_ms: u64,
        wall0: Instant,
    ) {
        if batch.is_empty() {
            return;
        }
        let all: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].waiting.is_none() && self.members[i].ahead.is_none())
            .collect();
        let took = self.send_to(batch, &all).await;
        // From the back, so that removing one keeps the indices of the others.
        for (&i, took) in all.iter().zip(took).rev() {
            self.settle(i, took, batch, state, start_ms, wall0);
        }
        // Members ahead of the group: from their packet on, once the group is there.
        let ahead: Vec<u64> = self
            .members
            .iter()
            .filter(|m| m.waiting.is_none() && m.ahead.is_some())
            .map(|m| m.id)
            .collect();
        for id in ahead {
            let Some(i) = self.members.iter().position(|m| m.id == id) else {
                continue;
            };
            let Some(r) = &self.members[i].ahead else {
                continue;
            };
            let Some(at) = batch_at.iter().position(|b| same_packet(b, &r.next)) else {
                // Passed without seeing it (its block was read again, a copy of its
                // own): it goes on alone from where it is.
                let passed = state.feed.peek().is_none_or(|p| {
                    media_ms(p.media_ticks, clock_of(&state.clocks, p.track)) > r.next_ms
                });
                if passed {
                    let m = self.members.swap_remove(i);
                    let alone = m.state(state);
                    let (stop, stop_rx) = oneshot::channel();
                    let task = tokio::spawn(run(alone, m.out.clone(), start_ms, wall0, stop_rx));
                    let _ = m.done.send(Handoff::Alone(stop, task));
                }
                continue;
            };
            let rest = batch.get(at..).unwrap_or_default();
            let after = counts_after(rest, state);
            self.members[i].reached(&state.rewriter, &after);
            let took = self.send_to(rest, &[i]).await;
            if let Some(took) = took.into_iter().next() {
                self.settle(i, took, rest, state, start_ms, wall0);
            }
        }
    }

    /// Member `i` took `took` of `batch`: one that took part of it is handed the rest
    /// and goes on alone; one whose connection closed leaves.
    fn settle(
        &mut self,
        i: usize,
        took: Took,
        batch: &[Numbered],
        state: &State,
        start_ms: u64,
        wall0: Instant,
    ) {
        match took {
            Took::All => {}
            Took::Gone => {
                let m = self.members.swap_remove(i);
                let paused = m.state(state);
                let _ = m.done.send(Handoff::Paused(paused));
            }
            Took::Part(n) => {
                let m = self.members.swap_remove(i);
                let mut alone = m.state(state);
                alone.pending = batch
                    .iter()
                    .filter(|(slot, _)| is_interleaved(&m.out, *slot))
                    .skip(n)
                    .map(|(slot, d)| (*slot, Item::Whole(m.copy(*slot, d))))
                    .collect();
                let (stop, stop_rx) = oneshot::channel();
                let task = tokio::spawn(run(alone, m.out.clone(), start_ms, wall0, stop_rx));
                let _ = m.done.send(Handoff::Alone(stop, task));
            }
        }
    }

    /// Sends `batch` to the members at `which`; says per member how it took it.
    async fn send_to(&mut self, batch: &[Numbered], which: &[usize]) -> Vec<Took> {
        let mut took: Vec<Took> = which
            .iter()
            .map(|&i| {
                if self.members[i].out.conn.is_closed() {
                    Took::Gone
                } else {
                    Took::All
                }
            })
            .collect();
        // UDP: per track, the batch to every member sent from one socket in one
        // `sendmmsg` (as many as the kernel takes). Hit viewers of a caching route
        // share their URL's pair per track (`shared_pairs`), named in each one's SETUP
        // answer, so the whole group is one call per track, and every member is
        // still sent from the port it was told (a viewer behind a NAT that filters by
        // the sender's port drops media from any other).
        let slots = self.key.clocks.len();
        let tracks: Vec<Datagrams<'_>> = (0..slots)
            .map(|slot| {
                let slices: Vec<&[u8]> = batch
                    .iter()
                    .filter(|(s, _)| *s == slot)
                    .map(|(_, d)| d.as_ref())
                    .collect();
                let total = slices.iter().map(|s| s.len() as u64).sum();
                (slices, total)
            })
            .collect();
        // Per member of `which`, the packets and bytes it took, counted once per batch.
        let mut counted = vec![(0u64, 0u64); which.len()];
        for (slot, (shared, total)) in tracks.iter().enumerate() {
            if shared.is_empty() {
                continue;
            }
            // (socket, member of `which`, destination), by socket; members keep their
            // order within one socket.
            let mut on: Vec<(RawFd, usize, SocketAddr)> = which
                .iter()
                .enumerate()
                .filter(|(k, _)| matches!(took[*k], Took::All))
                .filter_map(|(k, &i)| {
                    let (fd, rtp) = self.members[i].udp.get(slot).copied().flatten()?;
                    Some((fd, k, rtp))
                })
                .collect();
            on.sort_by_key(|(fd, _, _)| *fd);
            // A member with a numbering of its own gets its own copies (a datagram is
            // one buffer).
            let copies: Vec<Option<Vec<Bytes>>> = on
                .iter()
                .map(|&(_, k, _)| {
                    let m = &self.members[which[k]];
                    m.own.as_ref()?;
                    Some(
                        batch
                            .iter()
                            .filter(|(s, _)| *s == slot)
                            .map(|(s, d)| m.copy(*s, d))
                            .collect(),
                    )
                })
                .collect();
            let copied: Vec<Option<Datagrams<'_>>> = copies
                .iter()
                .map(|c| {
                    c.as_ref().map(|c| {
                        (
                            c.iter().map(|d| d.as_ref()).collect(),
                            c.iter().map(|d| d.len() as u64).sum(),
                        )
                    })
                })
                .collect();
            let mut start = 0;
            while start < on.len() {
                let fd = on[start].0;
                let end = start + on[start..].iter().take_while(|e| e.0 == fd).count();
                let items: Vec<(SocketAddr, &[&[u8]])> = (start..end)
                    .map(|e| match &copied[e] {
                        Some((own, _)) => (on[e].2, own.as_slice()),
                        None => (on[e].2, shared.as_slice()),
                    })
                    .collect();
                let at = self.send_udp(which[on[start].1], slot, fd, &items).await;
                for (n, e) in (start..end).enumerate() {
                    let (slices, all) = match &copied[e] {
                        Some((own, all)) => (own.as_slice(), *all),
                        None => (shared.as_slice(), *total),
                    };
                    let done = match n.cmp(&at.0) {
                        std::cmp::Ordering::Less => slices.len(),
                        std::cmp::Ordering::Equal => at.1.min(slices.len()),
                        std::cmp::Ordering::Greater => 0,
                    };
                    let bytes = if done == slices.len() {
                        all
                    } else {
                        slices.iter().take(done).map(|s| s.len() as u64).sum()
                    };
                    let c = &mut counted[on[e].1];
                    c.0 += done as u64;
                    c.1 += bytes;
                }
                start = end;
            }
        }
        for (k, (packets, bytes)) in counted.into_iter().enumerate() {
            if packets > 0 {
                self.members[which[k]].out.tally.add_sent(packets, bytes);
            }
        }
        // Interleaved: the shared packets queued on each connection, its own
        // channel numbers in front.
        for (k, &i) in which.iter().enumerate() {
            if !matches!(took[k], Took::All) {
                continue;
            }
            if !self.members[i].interleaved {
                continue;
            }
            let out = &self.members[i].out;
            let frames: Vec<(u8, [u8; RTP_FIXED], Bytes)> = batch
                .iter()
                .filter_map(|(slot, d)| match out.dests.get(*slot) {
                    Some(Some((TrackDest::Interleaved { rtp, .. }, _))) => {
                        split_whole(d).map(|(mut head, rest)| {
                            if let Some(own) = &self.members[i].own {
                                own.apply(*slot, &mut head);
                            }
                            (*rtp, head, rest)
                        })
                    }
                    _ => None,
                })
                .collect();
            if frames.is_empty() {
                continue;
            }
            let n = frames.len();
            let bytes: u64 = frames
                .iter()
                .map(|(_, h, r)| (h.len() + r.len()) as u64)
                .sum();
            let left = out.conn.push_media_split(frames);
            let left_bytes: u64 = left
                .iter()
                .map(|(_, h, r)| (h.len() + r.len()) as u64)
                .sum();
            out.tally
                .add((n - left.len()) as u64, bytes - left_bytes, 0);
            if !left.is_empty() {
                took[k] = if out.conn.is_closed() {
                    Took::Gone
                } else {
                    Took::Part(n - left.len())
                };
            }
        }
        took
    }

    /// Sends each item's packets to its destination from `fd` (the RTP socket of
    /// track `slot` of member `i` and of every member the items are for) in as few
    /// `sendmmsg` calls as the kernel takes, waiting for room (bounded) when the
    /// socket is full; returns where it stopped, as `send_udp_runs` does.
    async fn send_udp(
        &mut self,
        i: usize,
        slot: usize,
        fd: RawFd,
        items: &[(SocketAddr, &[&[u8]])],
    ) -> (usize, usize) {
        // The socket's descriptor, copied into the member: the hot loop reads only
        // the group's memory; the pair (kept open by the member's `out`) is looked
        // at only when the socket is full.
        let at = match self.sender.send_each_run(&RawSocket(fd), items, (0, 0)) {
            Ok((report, at)) if report.would_block => at,
            Ok(_) => return (items.len(), 0),
            Err(_) => return (0, 0),
        };
        let Some(Some((_, Some(pair)))) = self.members[i].out.dests.get(slot) else {
            return at;
        };
        let pair = Arc::clone(pair);
        send_udp_runs(&mut self.sender, &pair.rtp, items, at).await
    }

    /// The held range ended: each member goes on at the origin (its continuation) or
    /// is told with a BYE, in a task of its own.
    /// `media_us`: the media time playing now, which each member's numbering carries
    /// on to the origin's side with the wall clock (`Rewriter::set_pace`).
    fn end_of_range(&mut self, state: &State, media_us: u64) {
        let ntp = ntp_now();
        for m in self.members.drain(..) {
            let mut alone = m.state(state);
            alone.rewriter.set_pace(ntp, media_us);
            let out = m.out.clone();
            let task = tokio::spawn(async move {
                if !continue_at_end(&mut alone, &out).await {
                    send_bye(&alone.rewriter, &out).await;
                }
                alone
            });
            let (stop, _) = oneshot::channel();
            let _ = m.done.send(Handoff::Alone(stop, task));
        }
    }
}

/// Each track's sender report for now (`cache_play::run` says how).
fn sender_reports(
    rewriter: &Rewriter,
    state: &State,
    start_ms: u64,
    wall0: Instant,
) -> Vec<(usize, Bytes)> {
    let media_us = media_us_at(start_ms, wall0, Instant::now());
    let ntp = ntp_now();
    (0..state.clocks.len())
        .filter_map(|slot| Some((slot, rewriter.sender_report(slot, media_us, ntp)?)))
        .collect()
}

/// What a member's session calls once its PLAY answer is queued.
fn opener(cmds: &mpsc::UnboundedSender<Cmd>, id: u64) -> AnswerQueued {
    let cmds = cmds.clone();
    AnswerQueued::new(move || drop(cmds.send(Cmd::Open(id))))
}

/// Per track: the packets of `packets` and their payload octets.
fn counts_after(packets: &[Numbered], state: &State) -> Vec<(u32, u32)> {
    let mut after = vec![(0u32, 0u32); state.clocks.len()];
    for (slot, d) in packets {
        if let Some(a) = after.get_mut(*slot) {
            a.0 = a.0.wrapping_add(1);
            a.1 = a.1.wrapping_add(payload_len(d));
        }
    }
    after
}

/// The same packet of a shared block (not merely equal bytes).
fn same_packet(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// Payload octets of RTP packet `d` (what a sender report counts).
fn payload_len(d: &Bytes) -> u32 {
    mediagate_rtp::RtpPacket::parse(d).map_or(0, |p| p.payload().len() as u32)
}

fn is_interleaved(out: &PlayerOut, slot: usize) -> bool {
    matches!(
        out.dests.get(slot),
        Some(Some((TrackDest::Interleaved { .. }, _)))
    )
}

/// A socket descriptor some member's `out` keeps open, for the send calls.
struct RawSocket(RawFd);

impl AsRawFd for RawSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Sends an RTCP packet of track `slot` to a member now, from its own RTCP port or on
/// its connection; dropped when its connection's backlog is full (the next report
/// follows).
fn send_rtcp_now(out: &PlayerOut, slot: usize, data: &Bytes) {
    let sent = match out.dests.get(slot) {
        Some(Some((TrackDest::Interleaved { rtcp, .. }, _))) => out.conn.push_media(*rtcp, data),
        Some(Some((TrackDest::Udp { rtcp, .. }, Some(pair)))) => {
            pair.rtcp.try_send_to(data, *rtcp).is_ok()
        }
        _ => false,
    };
    if sent {
        out.tally.add(1, data.len() as u64, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_shared::tests::fixture;
    use crate::conn_out::Backlog;

    fn tcp_out(limits: Backlog) -> PlayerOut {
        PlayerOut {
            conn: ConnOut::new(limits),
            dests: vec![
                Some((TrackDest::Interleaved { rtp: 0, rtcp: 1 }, None)),
                Some((TrackDest::Interleaved { rtp: 2, rtcp: 3 }, None)),
            ],
            tally: Arc::new(Tally::default()),
            at_end: None,
        }
    }

    async fn player(f: &crate::cache_shared::tests::Fixture, out: PlayerOut) -> CachePlayer {
        CachePlayer::open(f.store.clone(), f.key.clone(), vec![90_000, 8_000], 0, out)
            .await
            .unwrap()
            .unwrap()
    }

    /// Plays, with the answer queued at once.
    async fn play(p: &mut CachePlayer) -> PlayStart {
        let (start, answered) = p.play().await.unwrap();
        answered.done();
        start
    }

    #[tokio::test]
    async fn media_waits_until_the_play_answer_is_queued() {
        let f = fixture("group-answer");
        let (a_out, b_out) = (tcp_out(Backlog::default()), tcp_out(Backlog::default()));
        let (mut a, mut b) = (
            player(&f, a_out.clone()).await,
            player(&f, b_out.clone()).await,
        );
        let (_, a_answered) = a.play().await.unwrap();
        let (_, b_answered) = b.play().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(a_out.conn.media_backlog().0, 0, "media before the answer");
        b_answered.done();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            b_out.conn.media_backlog().0 > 0,
            "the answered viewer got nothing"
        );
        assert_eq!(a_out.conn.media_backlog().0, 0, "media before the answer");
        // Its answer queued, the first viewer gets everything from the keyframe on.
        a_answered.done();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(a_out.tally.counts(), b_out.tally.counts());
        // Alone (a resume), the same holds.
        a.pause().await;
        let before = a_out.conn.media_backlog().0;
        let (_, again) = a.play().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            a_out.conn.media_backlog().0,
            before,
            "media before the answer"
        );
        again.done();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(a_out.conn.media_backlog().0 > before);
        a.pause().await;
        b.pause().await;
    }

    #[tokio::test]
    async fn viewers_that_start_together_share_one_numbering_and_a_pause_goes_on_alone() {
        let f = fixture("group");
        let (a_out, b_out) = (tcp_out(Backlog::default()), tcp_out(Backlog::default()));
        let (mut a, mut b) = (
            player(&f, a_out.clone()).await,
            player(&f, b_out.clone()).await,
        );
        let start_a = play(&mut a).await;
        let start_b = play(&mut b).await;
        assert_eq!(start_a, start_b, "the joiner takes the group's numbering");
        assert_eq!(f.store.groups().open_count(), 1);
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (ca, cb) = (a_out.tally.counts(), b_out.tally.counts());
        assert!(ca.packets > 0, "nothing was sent");
        assert_eq!(
            a_out.conn.media_backlog(),
            b_out.conn.media_backlog(),
            "the joiner got what the group sent before it joined"
        );
        assert_eq!((ca.packets, ca.bytes), (cb.packets, cb.bytes));
        // A leaves: it resumes alone with the group's numbering, from the next packet.
        a.pause().await;
        let sent_video = a_out.conn.media_backlog().0;
        let resumed = play(&mut a).await;
        assert!(resumed.start_ms > 0);
        let seq0 = start_a.tracks[0].0;
        let gap = resumed.tracks[0].0.wrapping_sub(seq0) as usize;
        assert!(gap > 0 && gap <= sent_video, "{gap} of {sent_video}");
        // A viewer starting after the join window opens a group of its own.
        tokio::time::sleep(JOIN_WINDOW).await;
        let c_out = tcp_out(Backlog::default());
        let mut c = player(&f, c_out).await;
        let start_c = play(&mut c).await;
        assert_ne!(start_c.tracks, start_a.tracks);
        b.pause().await;
        c.pause().await;
        a.pause().await;
    }

    #[tokio::test]
    async fn a_member_that_cannot_keep_up_goes_on_alone_without_slowing_the_group() {
        let f = fixture("group-slow");
        let slow_out = tcp_out(Backlog {
            max_media_packets: 8,
            ..Backlog::default()
        });
        let fast_out = tcp_out(Backlog::default());
        let mut fast = player(&f, fast_out.clone()).await;
        let mut slow = player(&f, slow_out.clone()).await;
        let start = play(&mut fast).await;
        assert_eq!(play(&mut slow).await, start);
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            slow_out.conn.media_backlog().0,
            8,
            "the slow viewer's queue is full"
        );
        let fast_sent = fast_out.tally.counts().packets;
        assert!(fast_sent > 8, "the group went on: {fast_sent}");
        // The slow viewer's own task waits for room and keeps what was numbered for
        // it: resuming names the first packet not queued, none skipped.
        slow.pause().await;
        let next = play(&mut slow).await;
        let queued = slow_out.conn.media_backlog().0 as u64;
        let skipped = u64::from(next.tracks[0].0.wrapping_sub(start.tracks[0].0))
            + u64::from(next.tracks[1].0.wrapping_sub(start.tracks[1].0));
        assert_eq!(
            skipped, queued,
            "the resume starts at the first packet not queued"
        );
        assert!(next.start_ms < 400, "{}", next.start_ms);
        slow.pause().await;
        fast.pause().await;
    }

    /// Every interleaved frame queued on `out` so far, as (channel, payload); closes it.
    async fn frames(out: &PlayerOut) -> Vec<(u8, Bytes)> {
        use tokio::io::AsyncReadExt;
        out.conn.close();
        let (mut rd, wr) = tokio::io::duplex(1 << 16);
        let conn = out.conn.clone();
        let writer = tokio::spawn(async move { conn.run_writer(wr).await });
        let mut raw = Vec::new();
        rd.read_to_end(&mut raw).await.unwrap();
        writer.await.unwrap().unwrap();
        let mut got = Vec::new();
        let mut at = 0;
        while at + 4 <= raw.len() {
            assert_eq!(raw[at], b'$', "a frame at {at}");
            let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
            got.push((
                raw[at + 1],
                Bytes::copy_from_slice(&raw[at + 4..at + 4 + len]),
            ));
            at += 4 + len;
        }
        got
    }

    /// (seq, timestamp, ssrc) of an RTP packet.
    fn numbers(d: &[u8]) -> (u16, u32, u32) {
        (
            u16::from_be_bytes([d[2], d[3]]),
            u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        )
    }

    #[tokio::test]
    async fn viewers_that_resume_at_the_same_place_share_a_group_each_with_its_own_numbering() {
        let f = fixture("group-resume");
        let (a_out, b_out) = (tcp_out(Backlog::default()), tcp_out(Backlog::default()));
        let (mut a, mut b) = (
            player(&f, a_out.clone()).await,
            player(&f, b_out.clone()).await,
        );
        // Started a second apart: two groups, two numberings.
        let a_start = play(&mut a).await;
        tokio::time::sleep(JOIN_WINDOW + Duration::from_millis(100)).await;
        let b_start = play(&mut b).await;
        assert_ne!(a_start.tracks, b_start.tracks);
        assert_eq!(
            f.store.groups().counts(),
            GroupCounts {
                opened: 2,
                joined: 0,
                alone: 0
            }
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Both seek to the same keyframe and resume there: the second joins the
        // group the first opened.
        assert!(a.seek(3_000).await.unwrap());
        assert!(b.seek(3_000).await.unwrap());
        let a_resumed = play(&mut a).await;
        let b_resumed = play(&mut b).await;
        assert_eq!(a_resumed.start_ms, 3_000);
        assert_eq!(b_resumed.start_ms, 3_000);
        assert_eq!(
            f.store.groups().counts(),
            GroupCounts {
                opened: 3,
                joined: 1,
                alone: 0
            },
            "the second resumer joined the first one's group"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Both pause at once and resume: again one group.
        a.pause().await;
        b.pause().await;
        let a_again = play(&mut a).await;
        let b_again = play(&mut b).await;
        assert_eq!(
            f.store.groups().counts(),
            GroupCounts {
                opened: 4,
                joined: 2,
                alone: 0
            },
            "the second viewer to resume after PAUSE joined the first one's group"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.pause().await;
        b.pause().await;
        let (a_frames, b_frames) = (frames(&a_out).await, frames(&b_out).await);
        for (name, got, resumes) in [
            ("a", &a_frames, [&a_resumed, &a_again]),
            ("b", &b_frames, [&b_resumed, &b_again]),
        ] {
            for (channel, slot) in [(0u8, 0usize), (2, 1)] {
                let rtp: Vec<(u16, u32, u32)> = got
                    .iter()
                    .filter(|(c, _)| *c == channel)
                    .map(|(_, d)| numbers(d))
                    .collect();
                assert!(rtp.len() > 10, "{name} got {} on {channel}", rtp.len());
                assert!(
                    rtp.iter().all(|n| n.2 == rtp[0].2),
                    "{name}: one SSRC on channel {channel}"
                );
                for w in rtp.windows(2) {
                    assert_eq!(
                        w[1].0,
                        w[0].0.wrapping_add(1),
                        "{name}: no gap or repeat on channel {channel}"
                    );
                    assert!(
                        w[1].1.wrapping_sub(w[0].1) < 1 << 31,
                        "{name}: timestamps go on on channel {channel}"
                    );
                }
                // Each resume's RTP-Info names the next packet the viewer got, and
                // the timestamp of the range's start (at or before that packet).
                for r in resumes {
                    let (seq, rtptime) = r.tracks[slot];
                    let first = rtp.iter().find(|n| n.0 == seq);
                    assert!(
                        first.is_some_and(|n| n.1.wrapping_sub(rtptime) < 90_000 / 2),
                        "{name}: RTP-Info {:?} of channel {channel}, packet {first:?}",
                        r.tracks[slot]
                    );
                }
            }
        }
        // After the seek both got the same packets, each under its own numbering.
        let after_seek = |got: &[(u8, Bytes)], r: &PlayStart| -> Vec<(u8, usize)> {
            let first = got
                .iter()
                .position(|(c, d)| *c == 0 && (numbers(d).0, numbers(d).1) == r.tracks[0])
                .unwrap();
            got[first..]
                .iter()
                .filter(|(c, _)| c % 2 == 0)
                .map(|(c, d)| (*c, d.len()))
                .collect()
        };
        let (a_after, b_after) = (
            after_seek(&a_frames, &a_resumed),
            after_seek(&b_frames, &b_resumed),
        );
        let n = a_after.len().min(b_after.len());
        assert!(n > 20, "{n}");
        assert_eq!(a_after[..n], b_after[..n]);
        assert_ne!(
            numbers(&a_frames[0].1).2,
            numbers(&b_frames[0].1).2,
            "each keeps its own SSRC"
        );
    }
    /// A UDP viewer's sockets (per track RTP and RTCP) and what the player sends it
    /// from `pairs` (per track).
    async fn udp_viewer(
        pairs: Vec<Arc<SocketPair>>,
    ) -> (
        Vec<(tokio::net::UdpSocket, tokio::net::UdpSocket)>,
        PlayerOut,
    ) {
        let mut socks = Vec::new();
        let mut dests = Vec::new();
        for pair in pairs {
            let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let rtcp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let dest = TrackDest::Udp {
                rtp: rtp.local_addr().unwrap(),
                rtcp: rtcp.local_addr().unwrap(),
            };
            dests.push(Some((dest, Some(pair))));
            socks.push((rtp, rtcp));
        }
        let out = PlayerOut {
            conn: ConnOut::new(Backlog::default()),
            dests,
            tally: Arc::new(Tally::default()),
            at_end: None,
        };
        (socks, out)
    }

    /// Every datagram waiting on `sock`: (sender, bytes).
    fn drain(sock: &tokio::net::UdpSocket) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.try_recv_from(&mut buf) {
            got.push((from, buf[..n].to_vec()));
        }
        got
    }

    #[tokio::test]
    async fn udp_members_sharing_a_pair_each_get_every_packet_from_its_port() {
        let f = fixture("group-shared-udp");
        let ports = crate::ports::PortAllocator::new("127.0.0.1".parse().unwrap(), 54_000, 56_000);
        let shared: Vec<Arc<SocketPair>> = vec![
            Arc::new(ports.bind_pair().await.unwrap()),
            Arc::new(ports.bind_pair().await.unwrap()),
        ];
        let own: Vec<Arc<SocketPair>> = vec![
            Arc::new(ports.bind_pair().await.unwrap()),
            Arc::new(ports.bind_pair().await.unwrap()),
        ];
        // Two viewers sent from the shared pairs, a third from pairs of its own: all
        // three in one group.
        let (a_socks, a_out) = udp_viewer(shared.clone()).await;
        let (b_socks, b_out) = udp_viewer(shared.clone()).await;
        let (c_socks, c_out) = udp_viewer(own.clone()).await;
        let mut players = Vec::new();
        for out in [&a_out, &b_out, &c_out] {
            let mut p = player(&f, out.clone()).await;
            play(&mut p).await;
            players.push(p);
        }
        assert_eq!(f.store.groups().open_count(), 1);
        tokio::time::sleep(Duration::from_millis(900)).await;
        for p in &mut players {
            p.pause().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut videos = Vec::new();
        for (name, socks, out, pairs) in [
            ("a", &a_socks, &a_out, &shared),
            ("b", &b_socks, &b_out, &shared),
            ("c", &c_socks, &c_out, &own),
        ] {
            let mut datagrams = 0;
            for (slot, (rtp, rtcp)) in socks.iter().enumerate() {
                let media = drain(rtp);
                let reports = drain(rtcp);
                assert!(
                    media.len() > 10,
                    "{name} got {} on track {slot}",
                    media.len()
                );
                assert!(
                    media
                        .iter()
                        .all(|(from, _)| *from == pairs[slot].rtp.local_addr().unwrap()),
                    "{name}: media from the port its SETUP answer named"
                );
                // The first sender report is due 500 ms after the start: one by now.
                assert!(
                    !reports.is_empty()
                        && reports
                            .iter()
                            .all(|(from, _)| *from == pairs[slot].rtcp.local_addr().unwrap()),
                    "{name}: reports from its RTCP port, got {} on track {slot}",
                    reports.len()
                );
                datagrams += media.len() + reports.len();
                if slot == 0 {
                    videos.push(media.into_iter().map(|(_, d)| d).collect::<Vec<_>>());
                }
            }
            assert_eq!(
                out.tally.counts().packets,
                datagrams as u64,
                "{name}: its tally counts what it was sent"
            );
        }
        // They paused one after another: the same packets up to the first pause.
        let n = videos.iter().map(Vec::len).min().unwrap_or(0);
        assert!(n > 10, "{n}");
        assert!(
            videos[0][..n] == videos[1][..n] && videos[0][..n] == videos[2][..n],
            "one group, one numbering"
        );
    }
}
