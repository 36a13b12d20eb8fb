//! Starts the enabled roles and the admin API, and runs until SIGINT or SIGTERM, then
//! drains every role at once (a second signal cuts the drains short; a role already
//! drained through the API is not drained twice). SIGHUP never ends the process: it
//! reloads the config file (see `reload`), as `POST /api/v1/reload` does.
//!
//! The binary knows roles only as [`RoleKind`]s in [`ROLES`] and running [`Role`]s in a
//! [`RoleSet`] it shares with the admin API; it owns what they share: the one records
//! writer (opened from `[accounting]` and `state_dir` when an enabled role keeps
//! records, closed after every role has stopped so their last records are written), the
//! access log (`[log] access_log`: reopened on SIGHUP for rotation, closed last like
//! the records), the metrics registry, signals and systemd.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mediagate_config::{AdminToken, Config};
use mediagate_ops::access_log::AccessLog;
use mediagate_ops::admin::{Admin, AdminOptions, AdminTls, ReloadError, ReloadHook};
use mediagate_ops::metrics::Metrics;
use mediagate_ops::role::{DrainCut, Role, RoleContext, RoleKind};
use mediagate_ops::role_set::RoleSet;
use mediagate_ops::signals::{OperatorSignal, Signals};
use mediagate_ops::store::{self, StoreTarget, Table, Writer, WriterOptions};
use mediagate_ops::systemd::Notifier;
use tracing::info;

use crate::reload::{apply, Reloader};

/// Every role this binary can run, in start order (the relay's ports are taken before
/// the edge accepts viewers, and the edge listens before the balancer that may sit in
/// front of it; the order has no other meaning).
const ROLES: &[RoleKind] = &[
    mediagate_relay::role::KIND,
    mediagate_edge::role::KIND,
    mediagate_balancer::role::KIND,
    mediagate_dispatcher::role::KIND,
];

/// Runs `config` until stopped; `file` is the config file it came from, which SIGHUP
/// re-reads (none when it was built from command-line flags).
pub fn run(config: Config, file: Option<PathBuf>) -> anyhow::Result<()> {
    let enabled: Vec<&RoleKind> = ROLES.iter().filter(|k| (k.enabled)(&config)).collect();
    if enabled.is_empty() {
        let names: Vec<String> = ROLES
            .iter()
            .map(|k| format!("[{}] enabled = true", k.name))
            .collect();
        anyhow::bail!("no role is enabled: set {}", names.join(" or "));
    }
    let state_dir = config.state_dir.get();
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create the state directory {}", state_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let reloader = Arc::new(Reloader::new(file, config.clone(), ROLES));
    runtime.block_on(serve(&config, &enabled, reloader))
}

async fn serve(
    config: &Config,
    enabled: &[&RoleKind],
    reloader: Arc<Reloader>,
) -> anyhow::Result<()> {
    let mut signals = Signals::new().context("cannot register signal handlers")?;
    // systemd (Type=notify): readiness, stopping and the watchdog; no-ops outside it.
    let systemd = Notifier::from_env();
    let _watchdog = systemd.spawn_watchdog();
    // Served over HTTP by the operations API (issue 11); the roles publish into it.
    let metrics = Metrics::new();
    let records = open_records(config, enabled).await?;
    if let Some(writer) = &records {
        writer.publish_metrics(&metrics);
    }
    let access_log = open_access_log(config, &metrics)?;
    let access_sink = access_log.as_ref().map(AccessLog::sink);
    let node_name = node_name();
    let ctx = RoleContext {
        metrics: &metrics,
        records: records.as_ref(),
        node_name: &node_name,
        access_log: access_sink.as_ref(),
    };
    let mut roles: Vec<Box<dyn Role>> = Vec::with_capacity(enabled.len());
    for kind in enabled {
        let role = (kind.start)(config, ctx)
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the {}: {e}", kind.name))?;
        roles.push(role);
    }
    let (cut_tx, cut) = DrainCut::new();
    let roles = Arc::new(RoleSet::new(roles, cut));
    let admin = Admin::start(
        admin_options(config)?,
        Arc::clone(&roles),
        metrics.clone(),
        Some(reload_hook(Arc::clone(&reloader), Arc::clone(&roles))),
    )
    .context("cannot start the admin API")?;
    // The status names the roles only: the API's address is in the log, and whether
    // it runs depends on whether its default address was free.
    let serving: Vec<String> = roles.roles().map(|r| r.serving()).collect();
    systemd.ready(&format!("serving: {}", serving.join("; ")));

    let hup_halts =
        *config.relay.enabled.get() && config.relay.sighup == mediagate_config::SighupAction::Halt;
    while signals.next().await == OperatorSignal::Reload {
        if hup_halts {
            info!("SIGHUP: halting, as relay.sighup = \"halt\" asks (running calls may finish)");
            break;
        }
        info!("SIGHUP: reloading the config; running sessions are untouched");
        systemd.reloading();
        if let Some(log) = &access_log {
            log.reopen();
            info!("log files reopened");
        }
        // The outcome is logged either way; a failed reload leaves everything as it was.
        let outcome = reload(&reloader, &roles).await.unwrap_or_else(|why| why);
        let first = outcome.lines().next().unwrap_or_default();
        systemd.ready(&format!("serving: {}; {first}", serving.join("; ")));
    }
    systemd.stopping();
    drain(&roles, cut_tx, &mut signals, &systemd).await;
    drop(admin);
    close_records(records).await;
    if let Some(log) = access_log {
        // Writing what is queued may wait for a slow disk: off the runtime.
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
    info!("shutting down");
    Ok(())
}

/// Drains every role at once (joining a drain the API started); a second SIGTERM/SIGINT
/// pulls `cut_tx`, which cuts every drain short. systemd is asked to wait for the
/// longest drain, so a `TimeoutStopSec=` shorter than it does not SIGKILL the process
/// while records are still being written.
async fn drain(
    roles: &RoleSet,
    cut_tx: tokio::sync::watch::Sender<bool>,
    signals: &mut Signals,
    systemd: &Notifier,
) {
    let longest = roles
        .roles()
        .map(|r| r.max_drain())
        .max()
        .unwrap_or_default();
    systemd.extend_timeout(longest + DRAIN_WRAP_UP);
    for role in roles.roles() {
        let stats = role.stats();
        info!(
            role = role.name(),
            "stopping the {}: {} {} running",
            role.name(),
            stats.sessions,
            stats.unit
        );
    }
    let mut drains = tokio::task::JoinSet::new();
    for role in roles.roles() {
        let name = role.name();
        if let Some(drain) = roles.drain(name) {
            drains.spawn(async move { (name, drain.await) });
        }
    }
    loop {
        tokio::select! {
            done = drains.join_next() => match done {
                None => break,
                Some(Ok((name, report))) => info!(
                    role = name,
                    ended = report.ended,
                    complete = report.complete,
                    "{name} stopped"
                ),
                Some(Err(e)) => tracing::error!("a role's drain failed: {e}"),
            },
            () = signals.next_stop(on_hangup), if !*cut_tx.borrow() => {
                info!("second stop signal: ending every session now");
                let _ = cut_tx.send(true);
            }
        }
    }
}

/// Re-reads the config file and applies it to every running role.
async fn reload(reloader: &Reloader, roles: &RoleSet) -> Result<String, String> {
    let prepared = reloader.prepare().await?;
    Ok(apply(prepared, roles.roles().map(|r| &**r)))
}

/// `POST /api/v1/reload`: the same reload as SIGHUP. Without a config file there is
/// nothing to re-read (501); an invalid file changes nothing (422, line:column).
fn reload_hook(reloader: Arc<Reloader>, roles: Arc<RoleSet>) -> ReloadHook {
    Arc::new(move || {
        let (reloader, roles) = (Arc::clone(&reloader), Arc::clone(&roles));
        Box::pin(async move {
            if !reloader.has_file() {
                return Err(ReloadError::NotAvailable(
                    "this process was configured from command-line flags, not a file: there is nothing to re-read".into(),
                ));
            }
            reload(&reloader, &roles)
                .await
                .map_err(ReloadError::Invalid)
        })
    })
}

/// `[admin]` as the API takes it, with the token file read. A token file that cannot
/// be read or holds a malformed token stops the start: running without the protection
/// the operator asked for is worse than not running.
fn admin_options(config: &Config) -> anyhow::Result<AdminOptions> {
    let admin = &config.admin;
    let token = match (&admin.token, &admin.token_file) {
        (Some(token), _) => Some(token.expose().to_owned()),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file.get()).with_context(|| {
                format!("cannot read admin.token_file {}", file.get().display())
            })?;
            let token: AdminToken = text
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("admin.token_file {}: {e}", file.get().display()))?;
            Some(token.expose().to_owned())
        }
        (None, None) => None,
    };
    let tls = match (&admin.tls_cert, &admin.tls_key) {
        (Some(cert), Some(key)) => Some(AdminTls {
            cert: cert.get().clone(),
            key: key.get().clone(),
            client_ca: admin.client_ca.as_ref().map(|ca| ca.get().clone()),
        }),
        _ => None,
    };
    Ok(AdminOptions {
        listen: admin.listen.iter().map(|a| a.get()).collect(),
        listen_is_default: admin.listen_is_default(),
        token,
        tls,
    })
}

/// Opens the records writer for the enabled roles that keep records: PostgreSQL when
/// `[accounting] postgres_url` is set, else the SQLite file under `state_dir`. None when
/// no enabled role keeps records. An unreachable PostgreSQL server is an error:
/// mediagate does not account somewhere else than configured.
async fn open_records(config: &Config, enabled: &[&RoleKind]) -> anyhow::Result<Option<Writer>> {
    let keepers: Vec<&RoleKind> = enabled
        .iter()
        .copied()
        .filter(|k| !k.record_tables.is_empty())
        .collect();
    if keepers.is_empty() {
        return Ok(None);
    }
    let tables: Vec<Table> = keepers
        .iter()
        .flat_map(|k| k.record_tables.iter().copied())
        .collect();
    let names: Vec<&str> = keepers.iter().map(|k| k.name).collect();
    let target = StoreTarget::from_config(&config.accounting, config.state_dir.get());
    // Opening may wait for a PostgreSQL server (bounded by its connect timeout), and
    // its client must not run on a runtime thread.
    let writer = tokio::task::spawn_blocking(move || {
        store::spawn(target, &tables, WriterOptions::default())
    })
    .await
    .context("the records writer's start-up thread failed")?
    .with_context(|| format!("cannot start the {}", names.join(" and ")))?;
    Ok(Some(writer))
}

/// Opens `[log] access_log` when set; a file that cannot be opened stops the start
/// (the operator asked for a log that would silently not be written).
fn open_access_log(config: &Config, metrics: &Metrics) -> anyhow::Result<Option<AccessLog>> {
    let Some(path) = &config.log.access_log else {
        return Ok(None);
    };
    let log = AccessLog::open(path.get(), config.log.access_log_format)
        .with_context(|| format!("cannot open log.access_log {}", path.get().display()))?;
    log.publish_metrics(metrics);
    info!(path = %path.get().display(), "access log: writing to {}", path.get().display());
    Ok(Some(log))
}

/// Writes what the roles left (they have stopped) and stops the writer.
async fn close_records(records: Option<Writer>) {
    if let Some(writer) = records {
        // Closing may make a last bounded attempt at PostgreSQL: off the runtime.
        let _ = tokio::task::spawn_blocking(move || writer.close()).await;
    }
}

/// Time after a drain's last session for writing its records and exiting.
const DRAIN_WRAP_UP: Duration = Duration::from_secs(30);

/// SIGHUP during a drain: no reload (the roles are going away), and never an end.
fn on_hangup() {
    info!(
        "SIGHUP while stopping: no reload (the roles are draining); running sessions are untouched"
    );
}

/// This node's name for `Via` headers.
fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "mediagate".to_owned())
}
