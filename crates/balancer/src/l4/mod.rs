//! L4 services for ports the balancer does not parse (issue 14, item 6): a TCP proxy,
//! UDP sessions keyed by the client's address, and port groups (the classic fwmark
//! recipe: a client's TCP port and UDP port ranges go to one back end).
//!
//! What it does: [`tcp::spawn`] accepts, picks a back end through a [`Picker`],
//! connects with a timeout (a failed connect is reported for passive health and the
//! next pick is tried once), optionally writes a PROXY v2 header, then copies both ways
//! with `splice(2)` through a pipe (userspace copy where the kernel refuses), passing
//! half-closes on. [`udp::spawn`] gives each client address its own connected socket
//! to its back end so replies map back, and forgets it after an idle timeout.
//! [`group::PortGroup`] runs one TCP and several UDP listeners whose flows share one
//! client-IP → back-end table with a persistence timeout. Every service counts per back
//! end ([`counters`]) and stops gracefully ([`ServiceHandle::stop`]).
//!
//! What it does not: schedule (the [`Picker`] decides; [`SchedPicker`] adapts a
//! [`crate::sched::Scheduler`]), check health (the caller's picker knows who is up and
//! is told about failed connects), or read configuration (the balancer role builds the
//! service configs).
//!
//! The state that decides (the UDP flow table, port-group persistence) is sans-IO in
//! the private `table` module: the shells pass `now` in. Design notes:
//! `docs/balancer-l4.md`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{BackendId, BackendView};
use crate::sched::{PickRequest, Scheduler};

pub mod counters;
pub mod group;
mod splice;
pub(crate) mod table;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testutil;
pub mod udp;

pub use counters::{BackendCounters, BackendStats, ServiceCounters, ServiceStats};

/// Chooses the back end for a new L4 flow. Called from the services' tasks, so it must
/// be quick and must not block on I/O.
pub trait Picker: Send + Sync + 'static {
    /// A back end for a new connection or flow from `client`, other than `avoid` (the
    /// one whose connect just failed). None when no back end takes new flows.
    fn pick(&self, client: IpAddr, avoid: Option<BackendId>) -> Option<(BackendId, SocketAddr)>;

    /// Where `id` is, if it takes new flows now (up and not drained); persistence asks
    /// before reusing a remembered back end.
    fn resolve(&self, id: BackendId) -> Option<SocketAddr>;

    /// A connect to `id` failed or timed out: passive health.
    fn connect_failed(&self, _id: BackendId) {}

    /// A flow from `client` to `id` ended (persistence counts live flows).
    fn flow_ended(&self, _client: IpAddr, _id: BackendId) {}
}

impl<P: Picker + ?Sized> Picker for Arc<P> {
    fn pick(&self, client: IpAddr, avoid: Option<BackendId>) -> Option<(BackendId, SocketAddr)> {
        (**self).pick(client, avoid)
    }
    fn resolve(&self, id: BackendId) -> Option<SocketAddr> {
        (**self).resolve(id)
    }
    fn connect_failed(&self, id: BackendId) {
        (**self).connect_failed(id)
    }
    fn flow_ended(&self, client: IpAddr, id: BackendId) {
        (**self).flow_ended(client, id)
    }
}

type FailureHook = Box<dyn Fn(BackendId) + Send + Sync>;

/// A [`Picker`] over a [`Scheduler`] and the service's back ends. The running flow
/// counts the schedulers read (`sessions`) come from the service's counters when
/// given. Health is the caller's: it sets `up` and weights through
/// [`SchedPicker::update`], and hears about failed connects through `on_failure`.
pub struct SchedPicker {
    state: Mutex<(Scheduler, Vec<BackendView>)>,
    counters: Option<Arc<ServiceCounters>>,
    on_failure: Option<FailureHook>,
}

impl SchedPicker {
    pub fn new(scheduler: Scheduler, backends: Vec<BackendView>) -> SchedPicker {
        SchedPicker {
            state: Mutex::new((scheduler, backends)),
            counters: None,
            on_failure: None,
        }
    }

    /// Reads running flow counts from `counters` at each pick (least-sessions).
    pub fn with_counters(mut self, counters: Arc<ServiceCounters>) -> SchedPicker {
        self.counters = Some(counters);
        self
    }

    /// Called with a back end whose connect failed.
    pub fn on_failure(mut self, hook: impl Fn(BackendId) + Send + Sync + 'static) -> SchedPicker {
        self.on_failure = Some(Box::new(hook));
        self
    }

    /// Changes the back ends (health, weights, reload) in place.
    pub fn update(&self, f: impl FnOnce(&mut Vec<BackendView>)) {
        f(&mut lock(&self.state).1);
    }
}

impl Picker for SchedPicker {
    fn pick(&self, client: IpAddr, avoid: Option<BackendId>) -> Option<(BackendId, SocketAddr)> {
        let mut st = lock(&self.state);
        let (sched, backends) = &mut *st;
        let mut view: Vec<BackendView> = backends.clone();
        for b in &mut view {
            // Not up rather than left out: the scheduler's state is built from the set.
            if Some(b.id) == avoid {
                b.up = false;
            }
            if let Some(c) = &self.counters {
                b.sessions = c.backend(b.id).active();
            }
        }
        let req = PickRequest {
            client_ip: client,
            url: None,
        };
        let id = sched.pick(&req, &view)?;
        view.iter().find(|b| b.id == id).map(|b| (id, b.addr))
    }

    fn resolve(&self, id: BackendId) -> Option<SocketAddr> {
        let st = lock(&self.state);
        st.1.iter()
            .find(|b| b.id == id && b.eligible())
            .map(|b| b.addr)
    }

    fn connect_failed(&self, id: BackendId) {
        if let Some(hook) = &self.on_failure {
            hook(id);
        }
    }
}

/// A poisoned lock only means another task panicked while holding it; the tables it
/// guards stay consistent between statements, so go on with them.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where a flow goes on the picked back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendPort {
    /// The port in the address the picker returned.
    #[default]
    FromPicker,
    /// The port the client reached on the balancer (port groups: the back end serves
    /// the same ports as the group).
    SameAsListener,
}

impl BackendPort {
    pub(crate) fn apply(self, picked: SocketAddr, listener: SocketAddr) -> SocketAddr {
        match self {
            BackendPort::FromPicker => picked,
            BackendPort::SameAsListener => SocketAddr::new(picked.ip(), listener.port()),
        }
    }
}

/// Stop signal shared by a service's tasks: `Some(grace)` once stopping began.
pub(crate) type StopRx = watch::Receiver<Option<Duration>>;

/// A running L4 service.
#[derive(Debug)]
pub struct ServiceHandle {
    local_addr: SocketAddr,
    counters: Arc<ServiceCounters>,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

impl ServiceHandle {
    pub(crate) fn new(
        local_addr: SocketAddr,
        counters: Arc<ServiceCounters>,
        stop: watch::Sender<Option<Duration>>,
        task: JoinHandle<()>,
    ) -> ServiceHandle {
        ServiceHandle {
            local_addr,
            counters,
            stop,
            task,
        }
    }

    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn counters(&self) -> &Arc<ServiceCounters> {
        &self.counters
    }

    /// Stops taking new connections and flows at once, lets running ones go on for up
    /// to `grace`, then closes what is left. Returns when everything is closed.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        let _ = self.task.await;
    }
}
