//! The balancer role: puts a cluster of media servers or edges behind one address
//! (issue 14). RTSP services are routed by session with `Transport` rewriting; other
//! ports are L4 services.
//!
//! Modules: [`backend`] (the back ends a service balances over, as the schedulers and
//! health see them), [`sched`] (schedulers and persistence, sans-IO), [`health`]
//! (health state and checks), [`l4`] (TCP and UDP services, port groups),
//! [`proxy_v2`] (the PROXY protocol v2 header), [`role`] (the balancer as a role of the
//! binary: its services, RTSP session routing in the crate-internal `rtsp` module,
//! counters in `service`, failover through keepalived with the session table synced
//! to the standby in `sync`).

pub mod backend;
pub mod health;
pub mod l4;
pub(crate) mod l4_service;
pub mod proxy_v2;
pub mod role;
pub(crate) mod rtsp;
pub mod sched;
pub(crate) mod service;
pub(crate) mod sync;
