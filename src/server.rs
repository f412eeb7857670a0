//! Process assembly: stores, the live configuration, and the Pingora services that serve them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;

use crate::admin::{Admin, Revoker};
use crate::app::App;
use crate::auth::unix_now;
use crate::config::{Backend, Config};
use crate::connections::{Connections, Limits};
use crate::live::Live;
use crate::password::Passwords;
use crate::proxy::Gateway;
use crate::reload::Reloader;
use crate::revocation::Revocations;
use crate::sso::Sso;
use crate::store::cache::{Cache, Cached};
use crate::store::memory::{
    AlwaysReady, MemoryLogins, MemoryMfa, MemoryRevocations, MemorySessions, MemoryUsers,
};
use crate::store::redis::RedisStore;
use crate::store::users_file::UsersFile;
use crate::store::{RevocationStore, SessionStore, Stores};
use crate::tls::Certificates;

/// Build every service from `config` (read from `path`, which a reload reads again) and serve
/// until a shutdown signal.
pub fn run(mut config: Config, path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    config.generate_missing_secret();
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // Each open connection holds a descriptor (two while proxied): take every descriptor the
    // system allows, rather than the 1024 a shell often starts with.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::info!(open_files = n, "descriptor limit"),
        Err(e) => tracing::warn!("could not raise the descriptor limit: {e}"),
    }
    let stores = build_stores(&mut config)?;
    let app = build_app(config.clone(), &stores)?;
    let live = Arc::clone(&app.live);
    let sessions = Arc::clone(&stores.sessions);
    let revoker = Revoker {
        users: Arc::clone(&stores.users),
        sessions: Arc::clone(&stores.sessions),
        devices: Arc::clone(&stores.devices),
        store: Arc::clone(&stores.revocation_store),
        revocations: Arc::clone(&stores.revocations),
    };

    // Refused here, naming the file, rather than by a listener that cannot start.
    let certificates = match &config.server.tls {
        Some(tls) => Some(Arc::new(Certificates::load(tls)?)),
        None => None,
    };

    let mut server = Server::new_with_opt_and_conf(None, server_conf(&config));
    server.bootstrap();

    let mut gateway = pingora::proxy::http_proxy(&server.configuration, Gateway::new(app));
    // An HTTP/2 connection with no request in flight closes after the keep-alive timeout, as an
    // idle HTTP/1 one does (HTTP/1 deadlines are kept by `Connections`).
    let mut options = HttpServerOptions::default();
    options.h2_idle_timeout = Some(config.server.keepalive_timeout);
    gateway.server_options = Some(options);
    let (connections, watchdog) = Connections::new(
        gateway,
        Limits {
            max_per_ip: config.server.max_connections_per_ip,
            header_timeout: config.server.header_timeout,
            idle: config.server.keepalive_timeout,
            trusted_proxies: config.server.trusted_proxies.clone(),
        },
    );
    // The TLS listener is a service of its own, sharing the application, the per-address
    // counts and the deadlines; like every Pingora service it runs `server.threads` workers.
    let tls_proxy = match (&config.server.tls, &certificates) {
        (Some(tls), Some(certificates)) => {
            let mut service = Service::new(
                "authgate tls".to_string(),
                connections.with_tls(certificates.acceptor()?),
            );
            service.add_tcp(&tls.listen.to_string());
            Some(service)
        }
        _ => None,
    };
    let proxy = config.server.listen.map(|listen| {
        let mut service = Service::new("authgate".to_string(), connections);
        service.add_tcp(&listen.to_string());
        service
    });

    let mut admin = Service::new(
        "authgate admin".to_string(),
        Admin {
            health: Arc::clone(&stores.health),
            live: Arc::clone(&live),
            revoker,
        },
    );
    admin.add_tcp(&config.admin.listen.to_string());

    let reloader = Reloader::new(
        path,
        Arc::clone(&live),
        stores.limits.clone(),
        stores.users_file.clone(),
        certificates,
    );
    let upkeep = background_service(
        "authgate upkeep",
        Upkeep {
            live: Arc::clone(&live),
            sessions,
            challenges: Arc::clone(&stores.challenges),
            logins: Arc::clone(&stores.logins),
            users_file: stores.users_file.clone(),
        },
    );

    tracing::info!(
        listen = %config.server.listen.map_or_else(|| "off".to_string(), |a| a.to_string()),
        tls = %config.server.tls.as_ref().map_or_else(|| "off".to_string(), |t| t.listen.to_string()),
        admin = %config.admin.listen,
        "authgate starting"
    );
    if let Some(proxy) = proxy {
        server.add_service(proxy);
    }
    if let Some(tls_proxy) = tls_proxy {
        server.add_service(tls_proxy);
    }
    server.add_service(admin);
    server.add_service(upkeep);
    server.add_service(background_service(
        "authgate connection deadlines",
        watchdog,
    ));
    server.add_service(background_service("authgate reload", reloader));
    // Identity providers' discovery and keys: fetched at start, retried while a provider is
    // down, refreshed; it follows the providers a reload puts in force.
    server.add_service(background_service(
        "authgate identity providers",
        ProviderRefresh(live),
    ));
    if let Some(listener) = stores.listener.clone() {
        // Follows Redis's change announcements for as long as the server runs.
        server.add_service(background_service("authgate redis listener", listener));
    }
    server.run_forever()
}

fn server_conf(config: &Config) -> ServerConf {
    let pid = std::process::id();
    ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        grace_period_seconds: Some(config.server.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(config.server.shutdown_timeout.as_secs()),
        // Per-process paths, so several gateways (or tests) can run side by side.
        pid_file: std::env::temp_dir()
            .join(format!("authgate-{pid}.pid"))
            .display()
            .to_string(),
        upgrade_sock: std::env::temp_dir()
            .join(format!("authgate-{pid}-upgrade.sock"))
            .display()
            .to_string(),
        ..ServerConf::default()
    }
}

/// Open the configured backend. Called before any runtime exists.
///
/// With Redis and no configured secret, the instances agree on one generated secret kept in
/// Redis, so a token issued by one instance is accepted by the others.
pub fn build_stores(config: &mut Config) -> anyhow::Result<Stores> {
    Ok(match &config.store.backend {
        Backend::Memory => {
            let users_file = UsersFile::load(&config.store.users_file)?;
            let users = Arc::new(MemoryUsers::new(
                users_file,
                Some(config.store.users_file.clone()),
            ));
            let mfa = Arc::new(MemoryMfa::default());
            // The cut-off lives in this process only.
            let revocations = Arc::new(Revocations::default());
            Stores {
                revocation_store: Arc::new(MemoryRevocations(Arc::clone(&revocations))),
                revocations,
                users: Arc::clone(&users) as Arc<dyn crate::store::UserStore>,
                users_file: Some(users),
                challenges: Arc::clone(&mfa) as Arc<dyn crate::store::ChallengeStore>,
                devices: mfa,
                logins: Arc::new(MemoryLogins::default()),
                sessions: Arc::new(MemorySessions::default()),
                limits: None,
                health: Arc::new(AlwaysReady),
                listener: None,
            }
        }
        Backend::Redis(settings) => {
            let redis = RedisStore::connect(settings)?;
            if settings.seed_users && config.store.users_file.exists() {
                seed(&redis, &config.store.users_file);
            }
            if config.token.secret_generated {
                match redis.block_on(redis.shared_secret(&config.token.secret))? {
                    Ok(secret) => {
                        tracing::warn!("using the generated token secret shared through redis");
                        config.token.secret = secret;
                    }
                    Err(e) => tracing::warn!(
                        "could not share the generated token secret through redis ({e}); tokens will only be valid on this instance"
                    ),
                }
            }
            // Users, organizations and sessions are read through this instance's cache, which
            // the listener keeps in step with every other instance's changes.
            let cache = Arc::new(Cache::new(settings.session_cache));
            let cached = Arc::new(Cached::new(redis.clone(), Arc::clone(&cache)));
            let revocations = Arc::new(Revocations::new(start_cut_off(&redis)));
            Stores {
                listener: Some(redis.listener(
                    settings.urls.clone(),
                    cache,
                    Arc::clone(&revocations),
                )),
                revocations,
                revocation_store: Arc::new(redis.clone()),
                users: Arc::clone(&cached) as Arc<dyn crate::store::UserStore>,
                sessions: cached,
                limits: Some(Arc::new(redis.clone())),
                users_file: None,
                challenges: Arc::new(redis.clone()),
                devices: Arc::new(redis.clone()),
                logins: Arc::new(redis.clone()),
                health: Arc::new(redis),
            }
        }
    })
}

/// The `issuedBefore` cut-off in force, read before the first request. Unreadable now, it is
/// read by the change listener as soon as Redis answers, before the cache is trusted (and every
/// request needs Redis until then anyway).
fn start_cut_off(redis: &RedisStore) -> i64 {
    match redis.block_on(redis.not_before()).and_then(|read| read) {
        Ok(t) => {
            if t > 0 {
                tracing::info!(
                    issued_before = t,
                    "tokens issued before the cut-off are refused"
                );
            }
            t
        }
        Err(e) => {
            tracing::warn!("could not read the issuedBefore cut-off from redis yet: {e}");
            0
        }
    }
}

/// Give a new Redis the users of the users file, so a fresh deployment can sign in at once.
fn seed(redis: &RedisStore, path: &std::path::Path) {
    let outcome = UsersFile::load(path)
        .map_err(|e| e.to_string())
        .and_then(|file| {
            redis
                .block_on(redis.seed(&file))
                .and_then(|r| r)
                .map_err(|e| e.to_string())
        });
    match outcome {
        Ok(0) => {}
        Ok(n) => tracing::info!("added {n} users from {} to redis", path.display()),
        Err(e) => tracing::warn!("could not seed redis from {}: {e}", path.display()),
    }
}

pub fn build_app(config: Config, stores: &Stores) -> anyhow::Result<App> {
    // The users file is the memory store itself, and what Redis was seeded from: its hashes
    // tell which kinds of hash the store holds, so failures can be made to look alike.
    let known_hashes: Vec<String> = UsersFile::load(&config.store.users_file)
        .map(|f| f.users.into_iter().map(|u| u.password_hash).collect())
        .unwrap_or_default();
    let passwords = Arc::new(Passwords::new(
        config.password.max_concurrent_hashes,
        config.password.max_queued_hashes,
        config.password.hash_priority,
        known_hashes.iter().map(String::as_str),
    ));
    let live = Live::build(config, stores.limits.clone())?;
    Ok(App {
        live: Arc::new(ArcSwap::from_pointee(live)),
        users: Arc::clone(&stores.users),
        sessions: Arc::clone(&stores.sessions),
        challenges: Arc::clone(&stores.challenges),
        devices: Arc::clone(&stores.devices),
        logins: Arc::clone(&stores.logins),
        revocations: Arc::clone(&stores.revocations),
        passwords,
    })
}

struct ProviderRefresh(Arc<ArcSwap<Live>>);

#[async_trait]
impl BackgroundService for ProviderRefresh {
    async fn start(&self, shutdown: ShutdownWatch) {
        let live = Arc::clone(&self.0);
        Sso::refresh_forever(move || Arc::clone(&live.load().sso), shutdown).await;
    }
}

/// Periodic chores: upstream health checks, and forgetting dead sessions and idle limiter keys.
struct Upkeep {
    live: Arc<ArcSwap<Live>>,
    sessions: Arc<dyn SessionStore>,
    challenges: Arc<dyn crate::store::ChallengeStore>,
    logins: Arc<dyn crate::store::LoginStore>,
    users_file: Option<Arc<MemoryUsers>>,
}

impl Upkeep {
    /// Pick up edits to the users file (disabling an account or an organization, say); a broken
    /// file is refused and the users in memory stay as they were.
    async fn reload_users(&self, force: bool) {
        let Some(users) = &self.users_file else {
            return;
        };
        match users.reload_if_changed(force).await {
            Ok(true) => tracing::info!("users file reloaded"),
            Ok(false) => {}
            Err(e) => tracing::error!("users file not reloaded, keeping the previous users: {e}"),
        }
    }
}

/// An upstream's identity for as long as it is in force: its address.
fn identity(upstream: &Arc<crate::upstream::Upstream>) -> usize {
    Arc::as_ptr(upstream) as usize
}

const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // By upstream identity: one a reload rebuilt is checked afresh, one it kept is not.
        let mut last_check: HashMap<usize, Instant> = HashMap::new();
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    // The last access lines, before the process ends.
                    crate::access_log::flush();
                    return;
                }
                _ = tick.tick() => {}
            }
            self.reload_users(false).await;
            let live = self.live.load_full();
            last_check.retain(|up, _| live.router.upstreams().iter().any(|u| identity(u) == *up));
            for upstream in live.router.upstreams() {
                let key = identity(upstream);
                let due = last_check
                    .get(&key)
                    .is_none_or(|t| t.elapsed() >= upstream.health_check);
                if due {
                    upstream.check_health().await;
                    last_check.insert(key, Instant::now());
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                self.sessions.sweep(unix_now()).await;
                self.challenges.sweep(unix_now()).await;
                self.logins.sweep(unix_now()).await;
                live.auth_limiter.sweep();
                live.failures.sweep();
                for route in live.router.routes() {
                    if let Some(limiter) = &route.limiter {
                        limiter.sweep();
                    }
                }
            }
        }
    }
}
