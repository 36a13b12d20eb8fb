//! Playout groups: the hit viewers of one object that start at the same place are
//! paced by one timer and sent each batch together (issue 13, performance).
//!
//! A viewer that has been sent nothing yet (its first PLAY, or a PLAY after a seek
//! before anything went out) joins the open group of its object version and start
//! (the block it starts with), or opens one. The group numbers its packets once (one
//! SSRC, sequence and timestamp mapping for all members, so every member's PLAY
//! answer names the same `RTP-Info` and `Range`), copies each packet once, and sends
//! each batch to every member: UDP members with one `sendmmsg` per track from the
//! member's own RTP socket (the port its SETUP answer named), interleaved members by queueing the
//! shared packet on each connection, as the hub does for a live stream. A group takes
//! joiners for [`JOIN_WINDOW`] after it started (and while what it sent so far fits
//! [`MAX_HISTORY`]). Every member, the first too, is sent nothing until its session
//! says its PLAY answer is queued; it is then sent what the group sent until then,
//! starting at the group's keyframe, and follows it.
//!
//! What stays per member: its destinations, its counters, its RTCP (sender reports go
//! out from its own RTCP port, and its receiver reports arrive there), and the end of
//! the range (its own continuation at the origin, or a BYE). A member leaves on PAUSE,
//! seek, a new PLAY or when its session goes, and goes on alone (`cache_play::run`)
//! from the first packet it was not sent, with the group's numbering; so does an
//! interleaved member whose connection cannot take a batch (a slow viewer slows only
//! itself, as before), and every member at the end of the range.
//!
//! What it does not: merge viewers that are at different places, or a viewer that was
//! already sent something (its numbering is its own) into a group.

use std::collections::HashMap;
use std::net::SocketAddr;
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
}

/// The groups of one cache store that take joiners.
#[derive(Debug, Default)]
pub(crate) struct PlayoutGroups {
    open: Mutex<HashMap<GroupKey, Arc<Handle>>>,
    next_id: AtomicU64,
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
        };
        let open = self.lock().get(&key).cloned();
        if let Some(h) = open {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (done_tx, done_rx) = oneshot::channel();
            let (ok_tx, ok_rx) = oneshot::channel();
            let member = Member {
                id,
                out: out.clone(),
                done: done_tx,
                waiting: Some(Instant::now()),
            };
            if h.cmds.send(Cmd::Join(member, ok_tx)).is_ok() && ok_rx.await == Ok(true) {
                let seat = Seat {
                    id,
                    cmds: h.cmds.clone(),
                    done: Some(done_rx),
                };
                return (h.start.clone(), seat, opener(&h.cmds, id));
            }
            self.close(&key, h.id);
        }
        let start = start_of(&state, position);
        let gid = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (cmds, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();
        let first = Member {
            id,
            out,
            done: done_tx,
            waiting: Some(Instant::now()),
        };
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

    #[cfg(test)]
    fn open_count(&self) -> usize {
        self.lock().len()
    }
}

/// A packet as every member gets it.
type Numbered = (usize, Bytes);

/// The group task's own state.
struct Group {
    groups: Arc<PlayoutGroups>,
    key: GroupKey,
    gid: u64,
    members: Vec<Member>,
    /// What was sent so far, for members that wait for their PLAY answer; None once
    /// it takes no joiners and none waits.
    history: Option<Vec<Numbered>>,
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
            }
            if self.members.is_empty() {
                break;
            }
            let mut batch: Vec<Numbered> = Vec::new();
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
                }
                state.feed.advance();
                if batch.len() >= MAX_BATCH {
                    break;
                }
            }
            self.send_all(&batch, &state, start_ms, wall0).await;
            if let Some(h) = &mut self.history {
                h.extend(batch);
                if h.len() > MAX_HISTORY {
                    self.stop_joins();
                }
            }
            if ended {
                while let Some(i) = self.members.iter().position(|m| m.waiting.is_some()) {
                    self.open(i, &state, start_ms, wall0).await;
                }
                state.ended = true;
                self.end_of_range(&state);
                return self.finish();
            }
            let now = Instant::now();
            if now >= next_sr {
                next_sr = now + SR_INTERVAL;
                let reports = sender_reports(&state, start_ms, wall0);
                for m in self.members.iter().filter(|m| m.waiting.is_none()) {
                    for (slot, sr) in &reports {
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
                    let _ = m.done.send(Handoff::Paused(state.snapshot()));
                }
            }
        }
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
        let history = self.history.clone().unwrap_or_default();
        if history.is_empty() {
            return;
        }
        let took = self.send_to(&history, &[i]).await;
        // Sender reports went out already: the joiner gets its own at once, so it
        // can sync its tracks as early as the others.
        if Instant::now() >= wall0 + FIRST_SR {
            for (slot, sr) in sender_reports(state, start_ms, wall0) {
                send_rtcp_now(&self.members[i].out, slot, &sr);
            }
        }
        if let Some(took) = took.into_iter().next() {
            self.settle(i, took, &history, state, start_ms, wall0);
        }
    }

    /// Sends `batch` to every member; those that could not take it go on alone.
    async fn send_all(&mut self, batch: &[Numbered], state: &State, start_ms: u64, wall0: Instant) {
        if batch.is_empty() {
            return;
        }
        let all: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].waiting.is_none())
            .collect();
        let took = self.send_to(batch, &all).await;
        // From the back, so that removing one keeps the indices of the others.
        for (&i, took) in all.iter().zip(took).rev() {
            self.settle(i, took, batch, state, start_ms, wall0);
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
                let _ = m.done.send(Handoff::Paused(state.snapshot()));
            }
            Took::Part(n) => {
                let m = self.members.swap_remove(i);
                let mut alone = state.snapshot();
                alone.pending = batch
                    .iter()
                    .filter(|(slot, _)| is_interleaved(&m.out, *slot))
                    .skip(n)
                    .map(|(slot, d)| (*slot, Item::Whole(d.clone())))
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
        // UDP: per track, the batch to each member in one `sendmmsg` from the member's
        // own RTP socket, the port its SETUP answer named: a viewer behind a NAT that
        // filters by the sender's port (it punched a hole towards that port) drops
        // media from any other.
        let slots = self.key.clocks.len();
        for slot in 0..slots {
            let slices: Vec<&[u8]> = batch
                .iter()
                .filter(|(s, _)| *s == slot)
                .map(|(_, d)| d.as_ref())
                .collect();
            if slices.is_empty() {
                continue;
            }
            let total: u64 = slices.iter().map(|s| s.len() as u64).sum();
            for (k, &i) in which.iter().enumerate() {
                if !matches!(took[k], Took::All) {
                    continue;
                }
                let Some(Some((TrackDest::Udp { rtp, .. }, Some(pair)))) =
                    self.members[i].out.dests.get(slot)
                else {
                    continue;
                };
                let (rtp, pair) = (*rtp, Arc::clone(pair));
                let at = send_udp_many(&mut self.sender, &pair.rtp, &slices, &[rtp]).await;
                let (sent, bytes) = if at.0 > 0 {
                    (slices.len(), total)
                } else {
                    let n = at.1.min(slices.len());
                    (n, slices.iter().take(n).map(|s| s.len() as u64).sum())
                };
                self.members[i].out.tally.add(sent as u64, bytes, 0);
            }
        }
        // Interleaved: the shared packets queued on each connection, its own
        // channel numbers in front.
        for (k, &i) in which.iter().enumerate() {
            if !matches!(took[k], Took::All) {
                continue;
            }
            let out = &self.members[i].out;
            let frames: Vec<(u8, [u8; RTP_FIXED], Bytes)> = batch
                .iter()
                .filter_map(|(slot, d)| match out.dests.get(*slot) {
                    Some(Some((TrackDest::Interleaved { rtp, .. }, _))) => {
                        split_whole(d).map(|(head, rest)| (*rtp, head, rest))
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

    /// The held range ended: each member goes on at the origin (its continuation) or
    /// is told with a BYE, in a task of its own.
    fn end_of_range(&mut self, state: &State) {
        for m in self.members.drain(..) {
            let mut alone = state.snapshot();
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
fn sender_reports(state: &State, start_ms: u64, wall0: Instant) -> Vec<(usize, Bytes)> {
    let now = Instant::now();
    let media_us = start_ms
        .saturating_mul(1000)
        .saturating_add(u64::try_from(now.duration_since(wall0).as_micros()).unwrap_or(0));
    let ntp = ntp_now();
    (0..state.clocks.len())
        .filter_map(|slot| Some((slot, state.rewriter.sender_report(slot, media_us, ntp)?)))
        .collect()
}

/// What a member's session calls once its PLAY answer is queued.
fn opener(cmds: &mpsc::UnboundedSender<Cmd>, id: u64) -> AnswerQueued {
    let cmds = cmds.clone();
    AnswerQueued::new(move || drop(cmds.send(Cmd::Open(id))))
}

fn is_interleaved(out: &PlayerOut, slot: usize) -> bool {
    matches!(
        out.dests.get(slot),
        Some(Some((TrackDest::Interleaved { .. }, _)))
    )
}

/// Sends every packet of `packets` to every address of `dests` from `sock`; returns
/// where it stopped (`send_to_many`'s resume point). A socket that stays unwritable
/// for a second drops the rest, as the hub does.
async fn send_udp_many(
    sender: &mut BatchSender,
    sock: &tokio::net::UdpSocket,
    packets: &[&[u8]],
    dests: &[SocketAddr],
) -> (usize, usize) {
    let mut at = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(1);
    while at.0 < dests.len() {
        match sender.send_to_many(sock, packets, dests, at) {
            Ok((report, next)) => {
                at = next;
                if report.would_block {
                    let _ = tokio::time::timeout_at(deadline, sock.writable()).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    at
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
}
