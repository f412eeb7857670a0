//! Configuration reload: on `SIGHUP`, or when the configuration file changes on disk, the file
//! is read and validated, and the new configuration is put in force in one swap. A file that
//! does not validate is refused, and the configuration in force stays. Settings that only a
//! restart can change keep their running values, and the log says so.
//!
//! The TLS listener's certificates are read again with every reload, on `SIGHUP` even when the
//! configuration is refused, and whenever a file in a certificate's or key's directory changes:
//! the next handshakes get the new certificates, open connections keep theirs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use notify::Watcher;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{Config, process_env};
use crate::live::Live;
use crate::store::LimitStore;
use crate::store::memory::MemoryUsers;
use crate::tls::Certificates;

/// Events closer together than this are one change (an editor writes, renames, touches).
const SETTLE: Duration = Duration::from_millis(150);

/// The background service that reloads.
pub struct Reloader {
    /// The configuration file; `None` runs on the embedded defaults (SIGHUP re-reads those).
    path: Option<PathBuf>,
    live: Arc<ArcSwap<Live>>,
    limits: Option<Arc<dyn LimitStore>>,
    /// The memory store's users file, re-read on SIGHUP too.
    users_file: Option<Arc<MemoryUsers>>,
    /// The TLS listener's certificates, when it runs.
    certificates: Option<Arc<Certificates>>,
    /// The file as the running configuration was read from it, taken before the server
    /// starts: a change made before the watch begins is still noticed.
    loaded: Option<Vec<u8>>,
}

impl Reloader {
    pub fn new(
        path: Option<PathBuf>,
        live: Arc<ArcSwap<Live>>,
        limits: Option<Arc<dyn LimitStore>>,
        users_file: Option<Arc<MemoryUsers>>,
        certificates: Option<Arc<Certificates>>,
    ) -> Reloader {
        let loaded = path.as_deref().and_then(|p| std::fs::read(p).ok());
        Reloader {
            path,
            live,
            limits,
            users_file,
            certificates,
            loaded,
        }
    }

    /// Read, validate and put the configuration in force; on failure the running one stays.
    pub async fn reload(&self) {
        match self.try_reload().await {
            Ok(kept) => {
                crate::metrics::record_reload(true);
                for key in &kept {
                    tracing::warn!(
                        "{key} changed: it takes effect after a restart; the running value stays"
                    );
                }
                tracing::info!(file = %self.shown(), "configuration reloaded");
            }
            Err(why) => {
                crate::metrics::record_reload(false);
                tracing::error!(
                    file = %self.shown(),
                    "configuration not reloaded, the running one stays: {why}"
                );
            }
        }
    }

    fn shown(&self) -> String {
        self.path
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "embedded defaults".into())
    }

    async fn try_reload(&self) -> Result<Vec<&'static str>, String> {
        let path = self.path.clone();
        let config =
            tokio::task::spawn_blocking(move || Config::load(path.as_deref(), &process_env))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let current = self.live.load_full();
        let (mut config, kept) = keep_restart_only(config, &current.config);
        // Certificates, keys and CA files are checked as at start: a bad one refuses the reload.
        let checked = config.clone();
        let tls_warnings = tokio::task::spawn_blocking(move || crate::tls::check(&checked))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        config.warnings.extend(tls_warnings);
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let tls = config.server.tls.clone();
        let live = Live::build_from(config, self.limits.clone(), Some(&current))
            .map_err(|e| e.to_string())?;
        if let (Some(certificates), Some(tls)) = (&self.certificates, tls) {
            let certificates = Arc::clone(certificates);
            let changed = tokio::task::spawn_blocking(move || certificates.reload(&tls))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if changed {
                tracing::info!("TLS certificates reloaded");
            }
        }
        self.live.store(Arc::new(live));
        Ok(kept)
    }

    /// Read the certificates of the configuration in force again, and put them in force if they
    /// changed; a pair that does not load (a certificate written before its key, say) leaves
    /// the ones in force, and the next change tries again.
    async fn reload_certificates(&self) {
        let (Some(certificates), Some(tls)) = (
            &self.certificates,
            self.live.load().config.server.tls.clone(),
        ) else {
            return;
        };
        let certificates = Arc::clone(certificates);
        match tokio::task::spawn_blocking(move || certificates.reload(&tls)).await {
            Ok(Ok(true)) => tracing::info!("TLS certificates reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::error!("TLS certificates not reloaded, the ones in force stay: {e}")
            }
            Err(e) => tracing::error!("TLS certificates not reloaded: {e}"),
        }
    }

    /// The directories to watch: the configuration file's, and every certificate's and key's,
    /// both as configured and where a symbolic link leads (Let's Encrypt's `live/` links into
    /// `archive/`; a Kubernetes secret volume swaps a `..data` link).
    fn watched_dirs(&self) -> Vec<PathBuf> {
        let files = self.watched_files();
        let mut dirs: Vec<PathBuf> = files
            .iter()
            .map(|f| match f.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The configuration file, and every certificate and key, as configured and where a link
    /// leads.
    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.path.iter().cloned().collect();
        if self.certificates.is_some() {
            if let Some(tls) = &self.live.load().config.server.tls {
                for pair in std::iter::once(&tls.default).chain(tls.sni.iter().map(|s| &s.files)) {
                    for file in [&pair.cert_file, &pair.key_file] {
                        files.push(file.clone());
                        if let Ok(real) = std::fs::canonicalize(file) {
                            files.push(real);
                        }
                    }
                }
            }
        }
        files
    }

    async fn reload_users(&self) {
        if let Some(users) = &self.users_file {
            match users.reload_if_changed(true).await {
                Ok(_) => tracing::info!("users file reloaded"),
                Err(e) => {
                    tracing::error!("users file not reloaded, keeping the previous users: {e}")
                }
            }
        }
    }

    /// Watch the directories of the files (an editor, a Kubernetes ConfigMap or certbot
    /// replaces a file rather than writing it in place). An event wakes the reloader only when
    /// it names one of the files, or a `..`-named entry (the links a Kubernetes volume swaps):
    /// a log written beside the configuration must not wake it on every line.
    fn watch(
        &self,
        dirs: &[PathBuf],
        wake: tokio::sync::mpsc::Sender<()>,
    ) -> Option<notify::RecommendedWatcher> {
        if dirs.is_empty() {
            return None;
        }
        let names: Vec<std::ffi::OsString> = self
            .watched_files()
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
            .collect();
        let relevant = move |path: &PathBuf| {
            path.file_name().is_some_and(|n| {
                names.iter().any(|w| w == n) || n.to_string_lossy().starts_with("..")
            })
        };
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(&relevant)) {
                    // Full means a wake-up is already pending.
                    let _ = wake.try_send(());
                }
            })
            .map_err(|e| tracing::warn!("cannot watch the configuration files: {e}"))
            .ok()?;
        for dir in dirs {
            if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), "cannot watch for changes: {e}");
            }
        }
        Some(watcher)
    }
}

/// The file's bytes, to tell a change from an event that changed nothing.
async fn contents(path: Option<&Path>) -> Option<Vec<u8>> {
    tokio::fs::read(path?).await.ok()
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let (wake, mut changed) = tokio::sync::mpsc::channel(1);
        let mut dirs = self.watched_dirs();
        let mut _watcher = self.watch(&dirs, wake.clone());
        let mut seen = self.loaded.clone();
        if contents(self.path.as_deref()).await != seen {
            // Changed between start-up and the watch: as if it had been seen.
            let _ = wake.try_send(());
        }
        self.reload_certificates().await;
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = hup => {
                    tracing::info!("SIGHUP: reloading");
                    seen = contents(self.path.as_deref()).await;
                    self.reload().await;
                    self.reload_users().await;
                    // Also when the configuration was refused (a certbot deploy hook sends
                    // SIGHUP whatever state the file is in).
                    self.reload_certificates().await;
                }
                Some(()) = changed.recv() => {
                    // Let the writer finish, then look once.
                    tokio::time::sleep(SETTLE).await;
                    while changed.try_recv().is_ok() {}
                    let now = contents(self.path.as_deref()).await;
                    if now.is_some() && now != seen {
                        seen = now;
                        self.reload().await;
                    }
                    self.reload_certificates().await;
                }
            }
            // A reload may have named other certificate files.
            let wanted = self.watched_dirs();
            if wanted != dirs {
                _watcher = self.watch(&wanted, wake.clone());
                dirs = wanted;
            }
        }
    }
}

/// `config` with the running values of the settings only a restart can change, and the names
/// of those that differ. A secret the process generated (none configured) is kept too, or
/// every token would die with the reload.
fn keep_restart_only(mut config: Config, running: &Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $name:literal) => {
            if config.$($field).+ != running.$($field).+ {
                kept.push($name);
                config.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!(server.listen, "server.listen");
    // Whether the TLS listener runs, and where, is fixed at start; its certificates are not.
    match (&mut config.server.tls, &running.server.tls) {
        (Some(next), Some(now)) if next.listen != now.listen => {
            kept.push("server.tls.listen");
            next.listen = now.listen;
        }
        (Some(_), None) | (None, Some(_)) => {
            kept.push("server.tls");
            config.server.tls = running.server.tls.clone();
        }
        _ => {}
    }
    keep!(admin.listen, "admin.listen");
    keep!(server.threads, "server.threads");
    keep!(server.work_stealing, "server.work_stealing");
    keep!(server.grace_period, "server.grace_period_secs");
    keep!(server.shutdown_timeout, "server.shutdown_timeout_secs");
    keep!(server.keepalive_timeout, "server.keepalive_timeout_secs");
    keep!(server.header_timeout, "server.header_timeout_secs");
    keep!(
        server.max_connections_per_ip,
        "server.max_connections_per_ip"
    );
    keep!(store, "store");
    keep!(
        password.max_concurrent_hashes,
        "password.max_concurrent_hashes"
    );
    keep!(password.max_queued_hashes, "password.max_queued_hashes");
    keep!(password.hash_priority, "password.hash_priority");
    if config.token.secret.is_empty() {
        config.token.secret = running.token.secret.clone();
        config.token.secret_generated = running.token.secret_generated;
    }
    (config, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        Config::from_toml(text, "t", &|_| None).unwrap()
    }

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let mut running = load("[server]\nlisten = \"127.0.0.1:1000\"\n");
        running.generate_missing_secret();
        let next = load(
            "[server]\nlisten = \"127.0.0.1:2000\"\nthreads = 7\n\
             [rate_limit]\nauth_per_minute = 99\n\
             [store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:1\"\n",
        );
        let (config, kept) = keep_restart_only(next, &running);
        assert_eq!(kept, ["server.listen", "server.threads", "store"]);
        assert_eq!(config.server.listen, running.server.listen);
        assert_eq!(config.server.threads, running.server.threads);
        assert_eq!(config.store, running.store);
        assert_eq!(
            config.rate_limit.auth_per_minute.get(),
            99,
            "the rest applies"
        );
        assert_eq!(
            config.token.secret, running.token.secret,
            "the generated secret survives"
        );
    }

    #[test]
    fn the_tls_listener_is_restart_only_but_not_its_certificates() {
        let tls = |listen: &str, cert: &str| {
            format!(
                "[server.tls]\nlisten = \"{listen}\"\ncert_file = \"{cert}\"\nkey_file = \"k\"\n"
            )
        };
        let running = load(&tls("127.0.0.1:8443", "a.pem"));
        let (config, kept) = keep_restart_only(load(&tls("127.0.0.1:9443", "b.pem")), &running);
        assert_eq!(kept, ["server.tls.listen"]);
        let now = config.server.tls.unwrap();
        assert_eq!(now.listen.port(), 8443);
        assert_eq!(
            now.default.cert_file,
            Path::new("b.pem"),
            "certificates follow"
        );

        let (config, kept) = keep_restart_only(load(""), &running);
        assert_eq!(kept, ["server.tls"]);
        assert_eq!(config.server.tls, running.server.tls, "the listener stays");
        let (config, kept) = keep_restart_only(running.clone(), &load(""));
        assert_eq!(kept, ["server.tls"]);
        assert!(config.server.tls.is_none(), "no listener appears");
    }
}
