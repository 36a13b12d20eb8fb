//! mediagate's operations layer: what every role reports into.
//!
//! * `access_log`: one line per finished session, text or JSON, on its own thread;
//! * `log`: the process log (`tracing`), `[log] level` and `format`, reopened on SIGHUP;
//! * `store`: the records store (SQLite or PostgreSQL), one writer per process, generic
//!   over the record type (relay calls, edge viewer sessions, later the dispatcher's);
//! * `metrics`: the counters and gauges the roles publish (served by `admin`);
//! * `process`: the standard `process_*` metrics, read from `/proc/self` when scraped;
//! * `signals`: SIGHUP, SIGTERM and SIGINT as one stream of operator requests;
//! * `role`: what the binary knows of a role (start, stats, its live picture, reload,
//!   drain), and `role_set`: the running roles shared by the binary and the API;
//! * `admin`: the management HTTP API (JSON, `/metrics`, `/openapi.json`) on its own
//!   thread;
//! * `systemd`: readiness, stopping, status and watchdog notifications to systemd;
//! * `users`: the edge's users file (Argon2id hashes, groups, optional Digest `HA1`).
//!
//! Every module is public: the binary and the roles are its users. Inside them, what
//! only the crate needs (the writer's `Spool`, the back ends' row plumbing, the log
//! subscriber's parts) is `pub(crate)`, and `unreachable_pub` keeps it that way.

#![warn(unreachable_pub)]

pub mod access_log;
pub mod admin;
pub mod log;
pub mod metrics;
pub(crate) mod process;
pub mod role;
pub mod role_set;
pub mod signals;
pub mod store;
pub mod systemd;
pub mod users;
