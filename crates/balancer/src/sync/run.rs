//! The failover tasks (tokio): watching the VRRP state file, writing the track file,
//! streaming the table to the peer while active, receiving the peer's while standby,
//! and taking the received sessions over on becoming active (module docs above).
//!
//! Bounds: a sync connection is accepted only from `sync_peer`'s IP and one at a time
//! (a new one replaces the old); lines are capped by [`super::wire::MAX_LINE`]; the
//! store holds at most `max_sessions` per node; a peer that stops reading stalls only
//! the sender, which gives up after [`WRITE_TIMEOUT`] and reconnects.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::wire::{encode, Hello, LineDecoder, Message, Remove, SessionRecord, Synced, VERSION};
use super::{adopt, export, Store};
use crate::service::Service;

/// How often the state file is read and the table diffed.
const TICK: Duration = Duration::from_millis(100);
/// How often the track file is rewritten.
const TRACK_EVERY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the stream may stay silent before a `synced` line is written anyway.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// What `[balancer]` says about failover.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailoverConfig {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) track_file: Option<PathBuf>,
    pub(crate) max_sessions: usize,
}

impl FailoverConfig {
    pub(crate) fn from_config(b: &mediagate_config::BalancerConfig) -> Self {
        Self {
            listen: b.sync_listen.as_ref().map(|a| a.get().0),
            peer: b.sync_peer.as_ref().map(|a| a.get().0),
            state_file: b.vrrp_state_file.as_ref().map(|p| p.get().clone()),
            track_file: b.vrrp_track_file.as_ref().map(|p| p.get().clone()),
            max_sessions: usize::try_from(b.max_sessions.get()).unwrap_or(usize::MAX),
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.listen.is_some()
            || self.peer.is_some()
            || self.state_file.is_some()
            || self.track_file.is_some()
    }
}

/// The failover state shown by `mediagate balancer status` and
/// `/api/v1/balancer/failover`.
#[derive(Debug)]
pub(crate) struct Failover {
    active: watch::Receiver<bool>,
    store: Arc<Mutex<Store>>,
    taken_over: Mutex<u64>,
    config: FailoverConfig,
    /// What keepalived's notify last wrote in the state file (trimmed), `None` while
    /// it cannot be read.
    vrrp_state: Mutex<Option<String>>,
    /// Active side: the table is being streamed to `sync_peer` now.
    streaming_to_peer: AtomicBool,
    /// Standby side: the peer streaming its table to this node now.
    peer_streaming_here: Mutex<Option<SocketAddr>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Failover {
    pub(crate) fn json(&self) -> serde_json::Value {
        let store = lock(&self.store);
        let active = *self.active.borrow();
        let show = |a: Option<SocketAddr>| a.map(|a| a.to_string());
        serde_json::json!({
            "configured": true,
            "active": active,
            "state": if active { "active" } else { "standby" },
            "vrrp_state_file": self.config.state_file.as_ref().map(|p| p.display().to_string()),
            "vrrp_state": *lock(&self.vrrp_state),
            "sync_peer": show(self.config.peer),
            "sync_peer_connected": self.streaming_to_peer.load(Ordering::Relaxed),
            "sync_listen": show(self.config.listen),
            "sync_from": show(*lock(&self.peer_streaming_here)),
            "standby_sessions": store.len(),
            "standby_synced": store.synced,
            "standby_dropped_total": store.dropped,
            "taken_over_total": *lock(&self.taken_over),
        })
    }
}

/// Starts the failover tasks for `services`; their handles go with the role's.
pub(crate) async fn start(
    config: FailoverConfig,
    services: Arc<[Arc<Service>]>,
) -> Result<(Arc<Failover>, Vec<JoinHandle<()>>), String> {
    let vrrp_state = match &config.state_file {
        Some(p) => read_state(p).await,
        None => None,
    };
    let initially = config.state_file.is_none() || is_master(vrrp_state.as_deref());
    let (active_tx, active) = watch::channel(initially);
    let failover = Arc::new(Failover {
        active,
        store: Arc::new(Mutex::new(Store::new(config.max_sessions))),
        taken_over: Mutex::new(0),
        config: config.clone(),
        vrrp_state: Mutex::new(vrrp_state),
        streaming_to_peer: AtomicBool::new(false),
        peer_streaming_here: Mutex::new(None),
    });
    let mut tasks = Vec::new();
    if let Some(listen) = config.listen {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("balancer: cannot listen for session sync on {listen}: {e}"))?;
        tracing::info!("balancer: taking the peer's session table on {listen}");
        tasks.push(tokio::spawn(receive(
            listener,
            config.peer,
            Arc::clone(&failover),
        )));
    }
    if let Some(peer) = config.peer {
        tasks.push(tokio::spawn(send(
            peer,
            Arc::clone(&services),
            Arc::clone(&failover),
        )));
    }
    if let Some(path) = config.track_file.clone() {
        tasks.push(tokio::spawn(track(path, Arc::clone(&services))));
    }
    if let Some(path) = config.state_file.clone() {
        tasks.push(tokio::spawn(watch_state(
            path,
            active_tx,
            Arc::clone(&failover),
            services,
        )));
    }
    Ok((failover, tasks))
}

/// Whether the state file says this node is the VRRP master. A missing or unreadable
/// file is not: two nodes must never both think they are active by default.
/// The state file's word (keepalived's notify writes `MASTER`, `BACKUP` or
/// `FAULT`), `None` while it cannot be read.
async fn read_state(path: &std::path::Path) -> Option<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_owned())
    })
    .await
    .ok()
    .flatten()
}

fn is_master(state: Option<&str>) -> bool {
    state.is_some_and(|s| s.eq_ignore_ascii_case("MASTER"))
}

async fn watch_state(
    path: PathBuf,
    active: watch::Sender<bool>,
    failover: Arc<Failover>,
    services: Arc<[Arc<Service>]>,
) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tick.tick().await;
        let state = read_state(&path).await;
        let now_active = is_master(state.as_deref());
        *lock(&failover.vrrp_state) = state;
        let was = *active.borrow();
        if now_active == was {
            continue;
        }
        if now_active {
            let records = lock(&failover.store).take();
            let taken = take_over(&services, &records, Instant::now());
            *lock(&failover.taken_over) += taken as u64;
            tracing::warn!(
                "balancer: this node is now active (VRRP MASTER); took over {taken} of {} synced sessions",
                records.len()
            );
        } else {
            tracing::warn!("balancer: this node is no longer active (VRRP state file: not MASTER); its sessions end as their clients leave");
        }
        let _ = active.send(now_active);
    }
}

/// Adopts `records` into their services; returns how many were taken.
pub(crate) fn take_over(
    services: &[Arc<Service>],
    records: &[SessionRecord],
    now: Instant,
) -> usize {
    let by_name: HashMap<&str, &Arc<Service>> =
        services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut taken = 0;
    for r in records {
        let Some(svc) = by_name.get(r.service.as_str()) else {
            tracing::warn!(service = %r.service, "balancer: a synced session names a service this node lacks");
            continue;
        };
        match adopt(svc, r, now) {
            Ok(unbound) => {
                taken += 1;
                if unbound > 0 {
                    tracing::warn!(service = %r.service, session = %r.id, "balancer: {unbound} relayed streams of a synced session could not resume");
                }
            }
            Err(e) => {
                tracing::warn!(service = %r.service, session = %r.id, "balancer: a synced session was not taken over: {e}");
            }
        }
    }
    taken
}

/// Standby side: one peer connection at a time, applied to the store.
async fn receive(listener: TcpListener, peer: Option<SocketAddr>, failover: Arc<Failover>) {
    // Aborted with this task (the role's drain), so no connection outlives it.
    let mut current: Option<AbortOnDrop> = None;
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("balancer: session sync accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Only the configured peer may write sessions into this node.
        if peer.is_some_and(|p| p.ip() != from.ip()) {
            tracing::warn!(%from, "balancer: a session sync connection not from sync_peer was refused");
            continue;
        }
        let reader = tokio::spawn(read_peer(stream, from, Arc::clone(&failover)));
        // The previous connection ends here.
        drop(current.replace(AbortOnDrop(reader)));
    }
}

/// A task that ends when this handle is dropped (the previous peer connection when a
/// new one arrives, or every connection when the receiver ends).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Clears the standby's "peer streaming here" however its reader ends (aborted by a
/// newer connection included), unless a newer one set it meanwhile.
struct StreamingHere(Arc<Failover>, SocketAddr);

impl Drop for StreamingHere {
    fn drop(&mut self) {
        let mut here = lock(&self.0.peer_streaming_here);
        if *here == Some(self.1) {
            *here = None;
        }
    }
}

async fn read_peer(mut stream: TcpStream, from: SocketAddr, failover: Arc<Failover>) {
    *lock(&failover.peer_streaming_here) = Some(from);
    let _here = StreamingHere(Arc::clone(&failover), from);
    let store = &failover.store;
    let mut decoder = LineDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut held = 0;
    loop {
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => {
                    let mut store = lock(store);
                    let was_synced = store.synced;
                    store.apply(m);
                    // Later `synced` lines are the active's heartbeat.
                    if store.synced && !was_synced {
                        tracing::info!(%from, "balancer: the peer's session table is here ({} sessions)", store.len());
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%from, "balancer: bad session sync stream: {e}");
                    return;
                }
            }
        }
        let now_held = lock(store).len();
        if now_held != held {
            held = now_held;
            tracing::debug!(%from, "balancer: holding {held} sessions of the peer");
        }
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => decoder.push(&buf[..n]),
            _ => return,
        }
    }
}

/// Active side: while active, keeps a connection to the peer and streams the table.
async fn send(peer: SocketAddr, services: Arc<[Arc<Service>]>, failover: Arc<Failover>) {
    let mut active = failover.active.clone();
    loop {
        if !*active.borrow() {
            if active.changed().await.is_err() {
                return;
            }
            continue;
        }
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
            Ok(Ok(s)) => s,
            _ => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tracing::info!(%peer, "balancer: streaming the session table to the standby");
        failover.streaming_to_peer.store(true, Ordering::Relaxed);
        stream_to(stream, &services, &active).await;
        failover.streaming_to_peer.store(false, Ordering::Relaxed);
    }
}

type Key = (String, String);

async fn stream_to(
    mut stream: TcpStream,
    services: &[Arc<Service>],
    active: &watch::Receiver<bool>,
) {
    let mut out = Vec::new();
    encode(
        &Message::Hello(Hello {
            version: VERSION,
            node: hostname(),
        }),
        &mut out,
    );
    let mut sent: HashMap<Key, SessionRecord> = HashMap::new();
    let mut first = true;
    let mut last_write = Instant::now();
    let mut pause = TICK;
    loop {
        tokio::time::sleep(pause).await;
        if !*active.borrow() {
            return;
        }
        let mut now: HashMap<Key, SessionRecord> = HashMap::new();
        for svc in services {
            for r in export(svc) {
                now.insert((r.service.clone(), r.id.clone()), r);
            }
        }
        // Diffing costs a record per session: a large table is diffed less often, so
        // the sync never takes more than about 100,000 records' work a second.
        pause = TICK.max(Duration::from_micros(10 * now.len() as u64));
        for (key, r) in &now {
            if sent.get(key) != Some(r) {
                encode(&Message::Add(r.clone()), &mut out);
            }
        }
        for (service, id) in sent.keys().filter(|k| !now.contains_key(*k)) {
            encode(
                &Message::Remove(Remove {
                    service: service.clone(),
                    id: id.clone(),
                }),
                &mut out,
            );
        }
        if first {
            encode(&Message::Synced(Synced {}), &mut out);
            first = false;
        }
        sent = now;
        if out.is_empty() {
            if last_write.elapsed() < HEARTBEAT {
                continue;
            }
            // A quiet table still writes now and then, so a standby that restarted
            // (its kernel answering with a reset) gets a new connection and a full
            // snapshot within a few seconds, not at the next change.
            encode(&Message::Synced(Synced {}), &mut out);
        }
        match tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&out)).await {
            Ok(Ok(())) => {
                out.clear();
                last_write = Instant::now();
            }
            _ => {
                tracing::warn!(
                    "balancer: the standby stopped taking the session table; reconnecting"
                );
                return;
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Rewrites `path` every second: `0` while every RTSP service has a back end up,
/// `1` otherwise (keepalived `track_file`: non-zero lowers the priority or faults).
async fn track(path: PathBuf, services: Arc<[Arc<Service>]>) {
    let mut tick = tokio::time::interval(TRACK_EVERY);
    let tmp = path.with_extension("tmp");
    loop {
        tick.tick().await;
        let healthy = services
            .iter()
            .filter(|s| s.l4.get().is_none())
            .all(|s| s.backend_list().iter().any(|b| b.up() && !b.retired()));
        let value = if healthy { "0\n" } else { "1\n" };
        // Written aside and renamed, so keepalived never reads half a file.
        let (tmp2, path2) = (tmp.clone(), path.clone());
        let written = tokio::task::spawn_blocking(move || {
            std::fs::write(&tmp2, value).and_then(|()| std::fs::rename(&tmp2, &path2))
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(path = %path.display(), "balancer: cannot write the VRRP track file");
        }
    }
}
