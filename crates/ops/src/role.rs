//! What the binary knows of a role: it starts it, asks for its figures and its live
//! picture, asks it to end a session, to reload, and to drain. The binary holds a list
//! of [`RoleKind`]s and, for the enabled ones, running roles behind [`Role`] (shared
//! with the admin API through [`RoleSet`](crate::role_set::RoleSet)); it never branches
//! on which role it is. Each role crate describes itself with a `RoleKind` and
//! implements `Role` for its engine.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mediagate_config::Config;
use tokio::sync::watch;

use crate::access_log::AccessSink;
use crate::metrics::Metrics;
use crate::store::{Table, Writer};

/// A role as the binary lists it, before it runs.
#[derive(Clone, Copy)]
pub struct RoleKind {
    /// The config section's name (`edge`, `relay`, …).
    pub name: &'static str,
    /// Whether the config asks for this role.
    pub enabled: fn(&Config) -> bool,
    /// The record tables it writes; the binary opens the records store with the union
    /// of every enabled role's tables (and not at all when there are none).
    pub record_tables: &'static [Table],
    /// Starts the role: binds its listeners and reports where it serves.
    pub start: for<'a> fn(&'a Config, RoleContext<'a>) -> RoleFuture<'a, StartResult>,
}

impl std::fmt::Debug for RoleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleKind")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// What a role's start gives back: the running role, or why it could not start.
pub type StartResult = Result<Box<dyn Role>, Box<dyn std::error::Error + Send + Sync>>;

/// What the binary shares with every role it starts.
#[derive(Clone, Copy)]
pub struct RoleContext<'a> {
    /// The process's metrics registry (served by the operations API).
    pub metrics: &'a Metrics,
    /// The process's one records writer, open when any enabled role keeps records.
    pub records: Option<&'a Writer>,
    /// This node's name (`Via` headers, records).
    pub node_name: &'a str,
    /// The access log (`[log] access_log`), when configured.
    pub access_log: Option<&'a AccessSink>,
}

/// A future a role hands back to the binary.
pub type RoleFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A running role. Shared between the binary and the admin API's thread, so every
/// method takes `&self`; a drained role stays listed (its picture is then empty).
pub trait Role: Send + Sync {
    /// The role's name as in the config's section (`edge`, `relay`, …).
    fn name(&self) -> &'static str;

    /// Where it serves, for the start-up status (`edge on 0.0.0.0:8554`, `relay`).
    fn serving(&self) -> String;

    /// A one-line picture of what it is serving now, for logs and `status`.
    fn stats(&self) -> RoleStats;

    /// The longest a drain of this role may take, so a service manager can be asked to
    /// wait for it.
    fn max_drain(&self) -> Duration;

    /// Applies a re-read, already validated config to new sessions; running sessions
    /// keep what they started with and are never dropped. Settings the role cannot
    /// change while it runs (its listeners, its threads) keep their running values and
    /// are named in [`Reload::Applied`]. A role without reload answers
    /// [`Reload::NotSupported`] and keeps its settings.
    fn reload(&self, _config: &mediagate_config::Config) -> Reload {
        Reload::NotSupported
    }

    /// The live picture of one of the role's resources for the admin API
    /// (`GET /api/v1/{role}/{resource}`): a JSON array of objects whose shape the
    /// OpenAPI document (`crates/ops/src/admin/openapi.json`) describes. `None` when
    /// the role has no such resource.
    fn snapshot(&self, _resource: &str) -> Option<RoleFuture<'_, serde_json::Value>> {
        None
    }

    /// Ends one session of a resource now (`DELETE /api/v1/{role}/{resource}/{id}`),
    /// recording the reason `admin` where the role keeps records. Resolves to false
    /// when no such session runs; `None` when the resource has no sessions to end.
    fn end_session(&self, _resource: &str, _id: &str) -> Option<RoleFuture<'_, bool>> {
        None
    }

    /// An operation on one of the role's own resources for the admin API: `action`
    /// (`list`, or a verb such as `pin`) on `resource` (such as `cache`), with the
    /// request's JSON body (`null` when it had none). Resolves to the JSON answer or a
    /// refusal; `None` when the role has no such resource, so the API can ask the
    /// next role.
    fn act(
        &self,
        _resource: &str,
        _action: &str,
        _body: serde_json::Value,
    ) -> Option<RoleFuture<'_, Result<serde_json::Value, ActError>>> {
        None
    }

    /// Stops taking new work, lets running work finish for at most the role's own drain
    /// time, ends what is left when `cut` turns true (a second SIGTERM) or the time is
    /// up, and releases everything. What it ended is in the report. Called at most
    /// once per role ([`RoleSet`](crate::role_set::RoleSet) sees to it), by SIGTERM or
    /// by the admin API; the future owns what it needs.
    fn drain(&self, cut: DrainCut) -> RoleFuture<'static, DrainReport>;
}

/// Why a role refused an [`Role::act`]; the admin API answers with the matching status
/// and the message, which says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    /// The request does not fit the action (400).
    #[error("{0}")]
    BadRequest(String),
    /// Nothing the action could apply to (404).
    #[error("{0}")]
    NotFound(String),
    /// The role cannot do this as configured (409), e.g. a cache that is turned off.
    #[error("{0}")]
    Unavailable(String),
    /// It went wrong on the way (500), e.g. a file that could not be removed.
    #[error("{0}")]
    Failed(String),
}

/// What a role is serving now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleStats {
    /// Sessions running now: viewers for the edge, calls for the relay.
    pub sessions: u64,
    /// What a session is for this role, for messages ("viewers", "calls").
    pub unit: &'static str,
}

/// The outcome of [`Role::reload`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The role took the new settings for new sessions, except those listed, which
    /// keep their running values until a restart (one sentence each, naming the key).
    Applied {
        /// What changed in the file but needs a restart.
        needs_restart: Vec<String>,
    },
    /// The role cannot reload; it keeps running with its current settings.
    NotSupported,
}

/// For a setting that cannot change while a role runs: when the re-read file wants
/// another value than `running`, says so in `needs_restart` (with both values, as
/// JSON, which reads like TOML for these values) and puts the running value back into
/// `wanted`, so the rest of the reload applies around it.
pub fn keep_until_restart<T>(
    key: &str,
    running: &T,
    wanted: &mut T,
    needs_restart: &mut Vec<String>,
) where
    T: PartialEq + Clone + serde::Serialize,
{
    if running == wanted {
        return;
    }
    let show = |v: &T| serde_json::to_string(v).unwrap_or_else(|_| "?".to_owned());
    needs_restart.push(format!(
        "{key} needs a restart (running with {}, the file says {})",
        show(running),
        show(wanted)
    ));
    *wanted = running.clone();
}

/// What a drain ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DrainReport {
    /// Sessions the role ended itself (the drain time ran out, it was told to cut, or
    /// the role ends its sessions on drain by design, as the edge does).
    pub ended: u64,
    /// Everything was released before the drain's own deadline.
    pub complete: bool,
}

/// The binary's "stop now" during a drain (a second SIGTERM or SIGINT).
#[derive(Clone, Debug)]
pub struct DrainCut(watch::Receiver<bool>);

impl DrainCut {
    /// A cut that the returned sender pulls.
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves when the cut is pulled (or its sender is gone, which means the same).
    pub async fn pulled(mut self) {
        let _ = self.0.wait_for(|cut| *cut).await;
    }

    /// Whichever comes first: the cut, or `max_wait`.
    pub async fn pulled_or_after(self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.pulled()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_cut_ends_the_wait_before_its_time() {
        let (tx, cut) = DrainCut::new();
        let waiting = tokio::spawn(cut.pulled_or_after(Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        tx.send(true).unwrap();
        let start = tokio::time::Instant::now();
        waiting.await.unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_cut_the_wait_ends_at_its_time() {
        let (_tx, cut) = DrainCut::new();
        let start = tokio::time::Instant::now();
        cut.pulled_or_after(Duration::from_secs(30)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[test]
    fn an_unchanged_setting_is_not_reported() {
        let mut notes = Vec::new();
        let mut wanted = vec!["0.0.0.0:8554".to_owned()];
        keep_until_restart("edge.listen", &wanted.clone(), &mut wanted, &mut notes);
        assert!(notes.is_empty());
    }

    #[test]
    fn a_changed_setting_keeps_its_running_value_and_says_both() {
        let mut notes = Vec::new();
        let running = vec!["0.0.0.0:8554".to_owned()];
        let mut wanted = vec!["0.0.0.0:9554".to_owned()];
        keep_until_restart("edge.listen", &running, &mut wanted, &mut notes);
        assert_eq!(wanted, running);
        assert_eq!(
            notes,
            ["edge.listen needs a restart (running with [\"0.0.0.0:8554\"], the file says [\"0.0.0.0:9554\"])"]
        );
    }

    #[tokio::test]
    async fn a_dropped_sender_counts_as_a_cut() {
        let (tx, cut) = DrainCut::new();
        drop(tx);
        cut.pulled().await;
    }
}
