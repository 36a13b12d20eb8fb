//! Reload without loss: SIGHUP (and the admin API) re-read the config file the process
//! was started with and hand it to every running role.
//!
//! What it does: [`Reloader::reload`] reads the file and validates it completely
//! first; a file that does not load changes nothing and the error names
//! `FILE:LINE:COL` as `check-config` does. Settings of the whole process that cannot
//! change while it runs (`state_dir`, `[log]`, `[admin]`, bound and read at start,
//! `[accounting]`: the one records store is open, and moving it between SQLite and PostgreSQL under running calls would split
//! their records, and which roles run) keep their running values and are reported as
//! needing a restart; each running role then gets the file through [`Role::reload`],
//! applies what it can to new sessions and names what it cannot (its listeners, its
//! threads). Running viewers and calls are never dropped. The outcome is one summary
//! line, logged and returned.
//!
//! What it does not: reopen log files (SIGHUP reopens the access log in `run`; the
//! admin API's reload does not, rotation being logrotate's `kill -HUP`), start or stop
//! roles, or re-read a config built from `mediagate edge`/`relay`
//! flags (there is no file; the reload says so and changes nothing).

use std::path::PathBuf;

use mediagate_config::{load_file, render_errors, Config, LoadError};
use mediagate_ops::role::{keep_until_restart, Reload, Role, RoleKind};
use tracing::{error, info, warn};

/// What a reload re-reads and what it compares against.
#[derive(Debug)]
pub(crate) struct Reloader {
    /// The `--config` file, or none when the config came from command-line flags.
    file: Option<PathBuf>,
    /// The config the process started with: the process-wide settings never change.
    started: Config,
    /// Every role this binary knows, to notice one being switched on or off.
    kinds: &'static [RoleKind],
}

/// A re-read file, validated and with the process-wide settings put back; ready to
/// hand to the roles.
#[derive(Debug)]
pub(crate) struct Prepared {
    config: Config,
    file: String,
    needs_restart: Vec<String>,
}

impl Reloader {
    pub(crate) fn new(file: Option<PathBuf>, started: Config, kinds: &'static [RoleKind]) -> Self {
        Self {
            file,
            started,
            kinds,
        }
    }

    /// Whether there is a config file to re-read.
    pub(crate) fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Re-reads the file and applies it to `roles`: a summary of what happened, or why
    /// nothing changed. Logs either.
    #[cfg(test)]
    pub(crate) async fn reload(&self, roles: &[Box<dyn Role>]) -> Result<String, String> {
        let prepared = self.prepare().await?;
        Ok(apply(prepared, roles.iter().map(|r| &**r)))
    }

    /// The first half of [`Reloader::reload`], which holds no role across its waiting:
    /// reads and validates the file, and puts back the process-wide settings that
    /// need a restart. Nothing has changed when it fails.
    pub(crate) async fn prepare(&self) -> Result<Prepared, String> {
        let Some(path) = self.file.clone() else {
            let why = "reload: nothing to re-read: this process was configured from command-line flags, not a file (start it with `mediagate run --config FILE` to reload); nothing changed".to_owned();
            warn!("{why}");
            return Err(why);
        };
        let name = path.display().to_string();
        let loaded = tokio::task::spawn_blocking(move || load_file(&path))
            .await
            .map_err(|e| format!("reload: reading {name} failed: {e}"))?;
        let wanted = loaded.map_err(|e| {
            let why = match e {
                LoadError::Invalid { text, errors } => {
                    let lines = render_errors(&name, &text, &errors);
                    format!(
                        "reload: {name} is not valid; nothing changed:\n{}",
                        lines.trim_end()
                    )
                }
                other => format!("reload: cannot read {name}; nothing changed: {other}"),
            };
            error!("{why}");
            why
        })?;
        let (config, needs_restart) = self.process_wide(wanted);
        Ok(Prepared {
            config,
            file: name,
            needs_restart,
        })
    }

    /// `wanted` with the settings of the whole process put back to the running ones.
    fn process_wide(&self, mut wanted: Config) -> (Config, Vec<String>) {
        let started = &self.started;
        let mut notes = Vec::new();
        keep_until_restart(
            "state_dir",
            &started.state_dir,
            &mut wanted.state_dir,
            &mut notes,
        );
        keep_until_restart("log", &started.log, &mut wanted.log, &mut notes);
        keep_until_restart(
            "accounting",
            &started.accounting,
            &mut wanted.accounting,
            &mut notes,
        );
        // The admin API is bound, and its token and certificates read, once at start.
        keep_until_restart(
            "admin.listen",
            &started.admin.listen,
            &mut wanted.admin.listen,
            &mut notes,
        );
        if started.admin != wanted.admin {
            // Not shown with its values: they may hold the token.
            notes.push(
                "admin token and TLS settings need a restart (the file changes them)".to_owned(),
            );
            wanted.admin = started.admin.clone();
        }
        for kind in self.kinds {
            let (was, now) = ((kind.enabled)(started), (kind.enabled)(&wanted));
            if was != now {
                notes.push(format!(
                    "{}.enabled needs a restart (the {} {}; the file {} it)",
                    kind.name,
                    kind.name,
                    if was { "is running" } else { "is not running" },
                    if now { "enables" } else { "disables" },
                ));
            }
        }
        (wanted, notes)
    }
}

/// The second half of [`Reloader::reload`]: hands the prepared config to every role,
/// logs each setting that needs a restart and returns the summary.
pub(crate) fn apply<'r>(
    prepared: Prepared,
    roles: impl IntoIterator<Item = &'r dyn Role>,
) -> String {
    let Prepared {
        config,
        file,
        mut needs_restart,
    } = prepared;
    let mut applied = Vec::new();
    let mut unsupported = Vec::new();
    for role in roles {
        match role.reload(&config) {
            Reload::Applied { needs_restart: n } => {
                applied.push(role.name());
                needs_restart.extend(n);
            }
            Reload::NotSupported => unsupported.push(role.name()),
        }
    }
    for note in &needs_restart {
        warn!("reload: {note}; the rest is applied");
    }
    let mut summary = format!("reloaded {file}");
    if !applied.is_empty() {
        summary.push_str(&format!(
            ": {} applied to new sessions, running sessions untouched",
            applied.join(" and ")
        ));
    }
    if !unsupported.is_empty() {
        summary.push_str(&format!(
            "; {} cannot reload and kept its settings",
            unsupported.join(" and ")
        ));
    }
    if needs_restart.is_empty() {
        info!("{summary}");
        return summary;
    }
    // The log has one warning per setting just above; the caller gets them all here.
    let count = format!("; {} setting(s) need a restart", needs_restart.len());
    info!("{summary}{count} (see the warnings above)");
    format!("{summary}{count}: {}", needs_restart.join("; "))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use mediagate_ops::role::{DrainCut, DrainReport, RoleFuture, RoleStats};

    use super::*;

    /// A role that counts its reloads and remembers the last `max_viewers` it saw.
    struct Probe {
        reloads: Arc<AtomicUsize>,
        seen: Arc<AtomicUsize>,
    }

    impl Role for Probe {
        fn name(&self) -> &'static str {
            "edge"
        }
        fn serving(&self) -> String {
            String::new()
        }
        fn stats(&self) -> RoleStats {
            RoleStats {
                sessions: 0,
                unit: "viewers",
            }
        }
        fn max_drain(&self) -> Duration {
            Duration::ZERO
        }
        fn reload(&self, config: &Config) -> Reload {
            self.reloads.fetch_add(1, Ordering::SeqCst);
            self.seen
                .store(config.edge.max_viewers.get() as usize, Ordering::SeqCst);
            Reload::Applied {
                needs_restart: vec!["edge.listen needs a restart (test)".into()],
            }
        }
        fn drain(&self, _cut: DrainCut) -> RoleFuture<'static, DrainReport> {
            Box::pin(async { DrainReport::default() })
        }
    }

    const KINDS: &[RoleKind] = &[mediagate_edge::role::KIND, mediagate_relay::role::KIND];

    /// A config file under the system's temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn rewrite(&self, text: &str) {
            std::fs::write(&self.0, text).unwrap();
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file(text: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("mediagate-reload-{}-{n}.toml", std::process::id()));
        let f = TempFile(path);
        f.rewrite(text);
        f
    }

    fn probe() -> (Vec<Box<dyn Role>>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let reloads = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicUsize::new(0));
        let role: Box<dyn Role> = Box::new(Probe {
            reloads: reloads.clone(),
            seen: seen.clone(),
        });
        (vec![role], reloads, seen)
    }

    #[tokio::test]
    async fn a_valid_file_reaches_every_role_and_the_summary_names_what_needs_a_restart() {
        let f = file("[edge]\nmax_viewers = 10\n");
        let started = load_file(&f.0).unwrap();
        let reloader = Reloader::new(Some(f.0.clone()), started, KINDS);
        f.rewrite("state_dir = \"/elsewhere\"\n[edge]\nmax_viewers = 20\n[relay]\nenabled = true\nmedia_address = [{ address = \"127.0.0.1\" }]\n");
        let (roles, reloads, seen) = probe();
        let summary = reloader.reload(&roles).await.unwrap();
        assert_eq!(reloads.load(Ordering::SeqCst), 1);
        assert_eq!(seen.load(Ordering::SeqCst), 20);
        assert!(
            summary.contains("edge applied to new sessions"),
            "{summary}"
        );
        assert!(summary.contains("3 setting(s) need a restart"), "{summary}");
        assert!(summary.contains("state_dir needs a restart"), "{summary}");
        assert!(
            summary.contains("relay.enabled needs a restart"),
            "{summary}"
        );
        assert!(
            summary.contains("edge.listen needs a restart (test)"),
            "{summary}"
        );
    }

    #[tokio::test]
    async fn the_process_wide_settings_reach_the_roles_as_they_run() {
        let f = file("[edge]\nmax_viewers = 10\n");
        let started = load_file(&f.0).unwrap();
        let reloader = Reloader::new(Some(f.0.clone()), started.clone(), KINDS);
        f.rewrite("state_dir = \"/elsewhere\"\n[log]\nlevel = \"debug\"\n");
        let prepared = reloader.prepare().await.unwrap();
        assert_eq!(prepared.config.state_dir, started.state_dir);
        assert_eq!(prepared.config.log, started.log);
        assert_eq!(
            prepared.needs_restart.len(),
            2,
            "{:?}",
            prepared.needs_restart
        );
    }

    #[tokio::test]
    async fn the_admin_api_keeps_its_address_and_token_until_a_restart() {
        let f = file("[admin]\nlisten = [\"127.0.0.1:9554\"]\n");
        let started = load_file(&f.0).unwrap();
        let reloader = Reloader::new(Some(f.0.clone()), started.clone(), KINDS);
        f.rewrite("[admin]\nlisten = [\"127.0.0.1:9555\"]\ntoken = \"0123456789abcdef-secret\"\n");
        let prepared = reloader.prepare().await.unwrap();
        assert_eq!(prepared.config.admin, started.admin);
        let notes = prepared.needs_restart.join("\n");
        assert!(notes.contains("admin.listen needs a restart"), "{notes}");
        assert!(notes.contains("admin token and TLS settings"), "{notes}");
        assert!(
            !notes.contains("secret"),
            "the token reached a log line: {notes}"
        );
    }

    #[tokio::test]
    async fn a_broken_file_changes_nothing_and_names_line_and_column() {
        let f = file("[edge]\nmax_viewers = 10\n");
        let started = load_file(&f.0).unwrap();
        let reloader = Reloader::new(Some(f.0.clone()), started, KINDS);
        f.rewrite("[edge]\nmax_viewers = 10\nsession_timeout = \"soon\"\n");
        let (roles, reloads, _) = probe();
        let why = reloader.reload(&roles).await.unwrap_err();
        assert_eq!(reloads.load(Ordering::SeqCst), 0);
        let at = format!("{}:3:19:", f.0.display());
        assert!(why.contains(&at), "{why}");
        assert!(why.contains("nothing changed"), "{why}");
    }

    #[tokio::test]
    async fn without_a_file_nothing_is_reloaded() {
        let reloader = Reloader::new(None, Config::default(), KINDS);
        let (roles, reloads, _) = probe();
        let why = reloader.reload(&roles).await.unwrap_err();
        assert_eq!(reloads.load(Ordering::SeqCst), 0);
        assert!(why.contains("command-line flags"), "{why}");
    }

    #[tokio::test]
    async fn a_missing_file_changes_nothing() {
        let f = file("");
        let path = f.0.clone();
        drop(f);
        let reloader = Reloader::new(Some(path), Config::default(), KINDS);
        let (roles, reloads, _) = probe();
        let why = reloader.reload(&roles).await.unwrap_err();
        assert_eq!(reloads.load(Ordering::SeqCst), 0);
        assert!(why.contains("cannot read"), "{why}");
    }
}
