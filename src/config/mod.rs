//! Configuration: TOML file + environment -> a validated, typed `Config`.
//!
//! The pipeline is parse (`raw`), override from the environment, then `validate`, which names
//! the offending key in every error so that a bad file fails at start, not on first use.

mod raw;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use rand::RngCore;

use crate::model::AccountType;
use raw::RawConfig;
pub use raw::UnderscoreHeaders;

/// The configuration the gateway runs on when no file is given.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../../conf/authgate.toml");

/// A secret shorter than this is refused: HS256 needs at least 256 bits of key.
pub const MIN_SECRET_BYTES: usize = 32;

/// Retry buffering in Pingora holds at most 64 KiB, so a body that is read for a token and then
/// forwarded cannot be larger than that.
pub const MAX_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: key `{key}`: {message}")]
    Parse {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub token: TokenSettings,
    pub store: StoreSettings,
    pub rate_limit: RateLimitSettings,
    pub password: PasswordSettings,
    pub register: RegisterSettings,
    pub mfa: MfaSettings,
    pub upstreams: Vec<UpstreamSettings>,
    pub routes: Vec<RouteSettings>,
    /// Things an operator should hear about at start (and from `check-config`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub trusted_proxies: Vec<IpNet>,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub grace_period: Duration,
    pub shutdown_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_read_timeout: Duration,
    pub access_log: bool,
    /// One work-stealing runtime for all worker threads, or one single-threaded runtime per
    /// worker thread (Pingora's "no steal" mode).
    pub work_stealing: bool,
    pub underscore_headers: UnderscoreHeaders,
    /// How long a kept-alive connection may wait for its next request.
    pub keepalive_timeout: Duration,
    /// How long a request header may take to arrive once it is due.
    pub header_timeout: Duration,
    /// Open connections per client address (trusted proxies exempt); 0 = no limit.
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

#[derive(Clone)]
pub struct TokenSettings {
    pub secret: Vec<u8>,
    /// True when no secret was configured and a random one was made for this process.
    pub secret_generated: bool,
    pub validity: Duration,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("secret", &"<redacted>")
            .field("secret_generated", &self.secret_generated)
            .field("validity", &self.validity)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub backend: Backend,
    /// The memory store's users file, and what `authgate users import` loads into Redis.
    pub users_file: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    Redis(RedisSettings),
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// One URL for a single server; several for the seed nodes of a cluster.
    pub urls: Vec<String>,
    /// Prepended to every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Longest wait for any Redis answer before the request gets 503.
    pub timeout: Duration,
    /// How long a session read from Redis may be reused locally; revocations still reach every
    /// instance at once through pub/sub.
    pub session_cache: Duration,
    /// At start, add users from the users file that Redis does not have yet.
    pub seed_users: bool,
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub auth_per_minute: NonZeroU32,
    /// Failed sign-ins on one account, from any address, that lock it for the rest of the window.
    pub account_failures: u32,
    /// Failed sign-ins on one account from one address that lock that address out of it.
    pub account_client_failures: u32,
    pub account_window: Duration,
}

/// Passwords longer than this are refused, never truncated.
pub const MAX_PASSWORD_CHARS: usize = 128;

#[derive(Debug, Clone)]
pub struct PasswordSettings {
    pub max_concurrent_hashes: usize,
    pub min_length: usize,
}

#[derive(Debug, Clone)]
pub struct RegisterSettings {
    pub enabled: bool,
    pub trial: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub name: String,
    pub servers: Vec<String>,
    pub health_check: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Required,
    Optional,
    None,
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub prefix: String,
    pub upstream: String,
    pub auth: AuthMode,
    pub account_types: Option<Vec<AccountType>>,
    pub rate_limit_per_minute: Option<NonZeroU32>,
    /// Let paths holding `%2F` or `%5C` through to this route, still encoded. Unsafe in front
    /// of a backend that decodes them into separators.
    pub allow_encoded_slashes: bool,
    /// Only callers whose organization is on one of these subscription tiers may pass.
    pub org_tiers: Option<Vec<String>>,
    /// Only callers whose organization is one of these may pass.
    pub org_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct MfaSettings {
    pub delivery: Delivery,
    pub code_ttl: Duration,
    pub max_attempts: u32,
    pub super_mandatory: bool,
    /// Unix seconds from which super-mandatory MFA applies.
    pub super_rollout: i64,
    pub trusted_device: Duration,
    pub device_cookie: String,
}

#[derive(Debug, Clone)]
pub enum Delivery {
    Smtp(SmtpSettings),
    Webhook {
        url: String,
    },
    /// Development only: the code is written to the log.
    Log,
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub from: String,
    pub tls: SmtpTls,
    pub credentials: Option<(String, String)>,
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "<redacted>")),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

/// Where environment overrides come from; tests pass a closure instead of the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Load `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text, &path.display().to_string(), env)
            }
            None => Config::from_toml(EMBEDDED_DEFAULTS, "embedded defaults", env),
        }
    }

    pub fn from_toml(text: &str, origin: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let mut raw = parse(text, origin)?;
        apply_env(&mut raw, env);
        validate(raw, origin)
    }
}

fn parse(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
        origin: origin.into(),
        key: "<syntax>".into(),
        message: e.to_string(),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let message = e.into_inner().message().to_string();
        ConfigError::Parse {
            origin: origin.into(),
            key,
            message,
        }
    })
}

fn apply_env(raw: &mut RawConfig, env: EnvLookup<'_>) {
    if let Some(secret) = env("JWT_SECRET") {
        raw.token.secret = Some(secret);
    }
    if let Some(validity) = env("JWT_VALIDITY_SEC") {
        // An unparsable value is kept as 0 so that validation names the key.
        raw.token.validity_secs = validity.trim().parse().unwrap_or(0);
    }
    if let Some(flag) = env("MFA_SUPER_MANDATORY") {
        raw.mfa.super_mandatory = matches!(
            flag.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        );
    }
    if let Some(url) = env("REDIS_URL") {
        let urls: Vec<String> = url
            .split([',', ' '])
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        raw.store.redis_url = Some(raw::RedisUrls::Many(urls));
    }
}

struct Validator<'a> {
    origin: &'a str,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            self.err(
                key,
                format!("`{value}` is not an address like 0.0.0.0:8080"),
            )
        })
    }
}

fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let v = Validator { origin };
    let mut warnings = Vec::new();

    let server = {
        let s = &raw.server;
        let trusted_proxies = s
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                parse_cidr(p).ok_or_else(|| {
                    v.err(
                        format!("server.trusted_proxies[{i}]"),
                        format!("`{p}` is not an IP address or CIDR"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if s.threads == 0 {
            return Err(v.err("server.threads", "must be at least 1"));
        }
        if s.max_body_bytes == 0 || s.max_body_bytes > MAX_BODY_LIMIT {
            return Err(v.err(
                "server.max_body_bytes",
                format!("must be between 1 and {MAX_BODY_LIMIT}"),
            ));
        }
        if s.keepalive_timeout_secs == 0 {
            return Err(v.err("server.keepalive_timeout_secs", "must be at least 1"));
        }
        if s.header_timeout_secs == 0 {
            return Err(v.err("server.header_timeout_secs", "must be at least 1"));
        }
        if s.upstream_connect_timeout_ms == 0 || s.upstream_read_timeout_ms == 0 {
            return Err(v.err(
                "server.upstream_connect_timeout_ms",
                "timeouts must be positive",
            ));
        }
        ServerSettings {
            listen: v.addr("server.listen", &s.listen)?,
            trusted_proxies,
            threads: s.threads,
            max_body_bytes: s.max_body_bytes,
            grace_period: Duration::from_secs(s.grace_period_secs),
            shutdown_timeout: Duration::from_secs(s.shutdown_timeout_secs),
            upstream_connect_timeout: Duration::from_millis(s.upstream_connect_timeout_ms),
            upstream_read_timeout: Duration::from_millis(s.upstream_read_timeout_ms),
            access_log: s.access_log,
            work_stealing: s.work_stealing,
            underscore_headers: s.underscore_headers,
            keepalive_timeout: Duration::from_secs(s.keepalive_timeout_secs),
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            max_connections_per_ip: s.max_connections_per_ip,
        }
    };

    let admin = AdminSettings {
        listen: v.addr("admin.listen", &raw.admin.listen)?,
    };
    if admin.listen == server.listen {
        return Err(v.err("admin.listen", "must differ from server.listen"));
    }

    let token = {
        if raw.token.validity_secs == 0 {
            return Err(v.err(
                "token.validity_secs",
                "must be a positive number of seconds (also check JWT_VALIDITY_SEC)",
            ));
        }
        let (secret, secret_generated) = match raw.token.secret {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => return Err(v.err(
                "token.secret",
                format!(
                    "is {} bytes; at least {MIN_SECRET_BYTES} are required (also check JWT_SECRET)",
                    secret.len()
                ),
            )),
            Some(secret) => (secret.into_bytes(), false),
            None => {
                warnings.push(
                    "token.secret is not set: using a random secret, so tokens will not survive a restart and instances will not share them".into(),
                );
                let mut secret = vec![0u8; 64];
                rand::rngs::OsRng.fill_bytes(&mut secret);
                (secret, true)
            }
        };
        TokenSettings {
            secret,
            secret_generated,
            validity: Duration::from_secs(raw.token.validity_secs),
        }
    };

    let store = {
        let s = &raw.store;
        let users_file = PathBuf::from(&s.users_file);
        if s.users_file.trim().is_empty() {
            return Err(v.err("store.users_file", "must not be empty"));
        }
        let backend = match s.backend.as_str() {
            "memory" => Backend::Memory,
            "redis" => Backend::Redis(redis_settings(&v, s)?),
            other => {
                return Err(v.err(
                    "store.backend",
                    format!("`{other}` is not one of \"memory\", \"redis\""),
                ));
            }
        };
        StoreSettings {
            backend,
            users_file,
        }
    };

    let rate_limit = {
        let r = &raw.rate_limit;
        if r.account_failures == 0 {
            return Err(v.err("rate_limit.account_failures", "must be at least 1"));
        }
        let account_client_failures = r.account_client_failures.unwrap_or(r.account_failures);
        if account_client_failures == 0 || account_client_failures > r.account_failures {
            return Err(v.err(
                "rate_limit.account_client_failures",
                "must be between 1 and rate_limit.account_failures",
            ));
        }
        if r.account_window_secs == 0 {
            return Err(v.err("rate_limit.account_window_secs", "must be at least 1"));
        }
        RateLimitSettings {
            auth_per_minute: NonZeroU32::new(r.auth_per_minute)
                .ok_or_else(|| v.err("rate_limit.auth_per_minute", "must be at least 1"))?,
            account_failures: r.account_failures,
            account_client_failures,
            account_window: Duration::from_secs(r.account_window_secs),
        }
    };

    let password = PasswordSettings {
        max_concurrent_hashes: match raw.password.max_concurrent_hashes {
            0 => return Err(v.err("password.max_concurrent_hashes", "must be at least 1")),
            n => n,
        },
        min_length: match raw.password.min_length {
            n if (1..=MAX_PASSWORD_CHARS).contains(&n) => n,
            _ => {
                return Err(v.err(
                    "password.min_length",
                    format!("must be between 1 and {MAX_PASSWORD_CHARS}"),
                ));
            }
        },
    };

    let register = RegisterSettings {
        enabled: raw.register.enabled,
        trial: Duration::from_secs(u64::from(raw.register.trial_days) * 86_400),
    };

    let mfa = mfa_settings(&v, &raw.mfa, &mut warnings)?;

    let mut upstreams: Vec<UpstreamSettings> = Vec::with_capacity(raw.upstreams.len());
    for (i, u) in raw.upstreams.into_iter().enumerate() {
        let key = |k: &str| format!("upstreams[{i}].{k}");
        if u.name.trim().is_empty() {
            return Err(v.err(key("name"), "must not be empty"));
        }
        if upstreams.iter().any(|o| o.name == u.name) {
            return Err(v.err(key("name"), format!("`{}` is defined twice", u.name)));
        }
        if u.servers.is_empty() {
            return Err(v.err(key("servers"), "needs at least one host:port"));
        }
        for (j, s) in u.servers.iter().enumerate() {
            if !looks_like_host_port(s) {
                return Err(v.err(
                    format!("upstreams[{i}].servers[{j}]"),
                    format!("`{s}` is not host:port"),
                ));
            }
        }
        if u.health_check_secs == 0 {
            return Err(v.err(key("health_check_secs"), "must be at least 1"));
        }
        upstreams.push(UpstreamSettings {
            name: u.name,
            servers: u.servers,
            health_check: Duration::from_secs(u.health_check_secs),
        });
    }

    let mut routes: Vec<RouteSettings> = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let key = |k: &str| format!("routes[{i}].{k}");
        if !r.prefix.starts_with('/') {
            return Err(v.err(key("prefix"), format!("`{}` must start with /", r.prefix)));
        }
        // Requests are routed on their normalised path, so a prefix that is not normalised
        // itself would never match.
        match crate::path::normalize(&r.prefix) {
            Ok(n) if n.path == r.prefix.as_str() && !n.encoded_separator => {}
            Ok(n) => {
                return Err(v.err(
                    key("prefix"),
                    format!(
                        "`{}` is not a normalised path; write `{}`",
                        r.prefix, n.path
                    ),
                ));
            }
            Err(e) => return Err(v.err(key("prefix"), format!("`{}`: {e}", r.prefix))),
        }
        if routes.iter().any(|o| o.prefix == r.prefix) {
            return Err(v.err(key("prefix"), format!("`{}` is defined twice", r.prefix)));
        }
        if !upstreams.iter().any(|u| u.name == r.upstream) {
            return Err(v.err(
                key("upstream"),
                format!("no upstream is named `{}`", r.upstream),
            ));
        }
        let auth = match r.auth.as_str() {
            "required" => AuthMode::Required,
            "optional" => AuthMode::Optional,
            "none" => AuthMode::None,
            other => {
                return Err(v.err(
                    key("auth"),
                    format!("`{other}` is not one of \"required\", \"optional\", \"none\""),
                ));
            }
        };
        let account_types = match r.account_types {
            None => None,
            Some(types) => {
                if auth != AuthMode::Required {
                    return Err(v.err(
                        key("account_types"),
                        "only applies to routes with auth = \"required\"",
                    ));
                }
                if types.is_empty() {
                    return Err(v.err(key("account_types"), "must list at least one account type"));
                }
                Some(
                    types
                        .iter()
                        .map(|t| {
                            AccountType::parse(t).ok_or_else(|| {
                                v.err(
                                    key("account_types"),
                                    format!("`{t}` is not one of \"super\", \"admin\", \"user\""),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
        };
        let org_list = |name: &str, list: Option<Vec<String>>| match list {
            None => Ok(None),
            Some(_) if auth != AuthMode::Required => {
                Err(v.err(key(name), "only applies to routes with auth = \"required\""))
            }
            Some(l) if l.is_empty() || l.iter().any(|x| x.trim().is_empty()) => Err(v.err(
                key(name),
                "must list at least one value, none of them empty",
            )),
            Some(l) => Ok(Some(l)),
        };
        let org_tiers = org_list("org_tiers", r.org_tiers)?;
        let org_ids = org_list("org_ids", r.org_ids)?;
        let rate_limit_per_minute = match r.rate_limit_per_minute {
            None => None,
            Some(n) => Some(
                NonZeroU32::new(n)
                    .ok_or_else(|| v.err(key("rate_limit_per_minute"), "must be at least 1"))?,
            ),
        };
        routes.push(RouteSettings {
            prefix: r.prefix,
            upstream: r.upstream,
            auth,
            account_types,
            rate_limit_per_minute,
            allow_encoded_slashes: r.allow_encoded_slashes,
            org_tiers,
            org_ids,
        });
    }

    Ok(Config {
        server,
        admin,
        token,
        store,
        rate_limit,
        password,
        register,
        mfa,
        upstreams,
        routes,
        warnings,
    })
}

fn redis_settings(v: &Validator<'_>, s: &raw::RawStore) -> Result<RedisSettings, ConfigError> {
    let urls = match s.redis_url.clone() {
        Some(raw::RedisUrls::One(u)) => vec![u],
        Some(raw::RedisUrls::Many(us)) => us,
        None => Vec::new(),
    };
    if urls.is_empty() {
        return Err(v.err(
            "store.redis_url",
            "is required when store.backend = \"redis\" (or set REDIS_URL)",
        ));
    }
    for url in &urls {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(v.err("store.redis_url", format!("`{url}` is not a redis:// URL")));
        }
    }
    if s.redis_key_prefix.contains(['{', '}']) {
        return Err(v.err(
            "store.redis_key_prefix",
            "must not contain { or } (they choose Redis Cluster slots)",
        ));
    }
    if s.redis_timeout_ms == 0 {
        return Err(v.err("store.redis_timeout_ms", "must be at least 1"));
    }
    Ok(RedisSettings {
        urls,
        key_prefix: s.redis_key_prefix.clone(),
        timeout: Duration::from_millis(s.redis_timeout_ms),
        session_cache: Duration::from_secs(s.session_cache_secs),
        seed_users: s.seed_users,
    })
}

fn mfa_settings(
    v: &Validator<'_>,
    m: &raw::RawMfa,
    warnings: &mut Vec<String>,
) -> Result<MfaSettings, ConfigError> {
    let delivery = match m.delivery.as_str() {
        "log" => {
            warnings.push(
                "mfa.delivery = \"log\" writes verification codes to the log: for development only"
                    .into(),
            );
            Delivery::Log
        }
        "webhook" => {
            let url = m.webhook_url.clone().ok_or_else(|| {
                v.err(
                    "mfa.webhook_url",
                    "is required when mfa.delivery = \"webhook\"",
                )
            })?;
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url.parse::<http::Uri>().is_err()
            {
                return Err(v.err("mfa.webhook_url", format!("`{url}` is not an http(s) URL")));
            }
            Delivery::Webhook { url }
        }
        "smtp" => {
            let s = &m.smtp;
            if s.host.trim().is_empty() {
                return Err(v.err("mfa.smtp.host", "must not be empty"));
            }
            if s.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(v.err(
                    "mfa.smtp.from",
                    format!("`{}` is not an email address", s.from),
                ));
            }
            let tls = match s.tls.as_str() {
                "none" => SmtpTls::None,
                "starttls" => SmtpTls::StartTls,
                "tls" => SmtpTls::Tls,
                other => {
                    return Err(v.err(
                        "mfa.smtp.tls",
                        format!("`{other}` is not one of \"none\", \"starttls\", \"tls\""),
                    ));
                }
            };
            let credentials = match (&s.username, &s.password) {
                (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                (None, None) => None,
                _ => return Err(v.err("mfa.smtp.username", "username and password go together")),
            };
            Delivery::Smtp(SmtpSettings {
                host: s.host.clone(),
                port: s.port,
                from: s.from.clone(),
                tls,
                credentials,
                timeout: Duration::from_secs(s.timeout_secs.max(1)),
            })
        }
        other => {
            return Err(v.err(
                "mfa.delivery",
                format!("`{other}` is not one of \"smtp\", \"webhook\", \"log\""),
            ));
        }
    };
    if m.code_ttl_secs == 0 {
        return Err(v.err("mfa.code_ttl_secs", "must be at least 1"));
    }
    if m.max_attempts == 0 {
        return Err(v.err("mfa.max_attempts", "must be at least 1"));
    }
    if m.trusted_device_days == 0 {
        return Err(v.err("mfa.trusted_device_days", "must be at least 1"));
    }
    let rollout = chrono::DateTime::parse_from_rfc3339(&m.super_rollout_date).map_err(|_| {
        v.err(
            "mfa.super_rollout_date",
            format!(
                "`{}` is not an RFC 3339 time like 2026-01-01T00:00:00Z",
                m.super_rollout_date
            ),
        )
    })?;
    if m.device_cookie.is_empty()
        || !m
            .device_cookie
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(v.err("mfa.device_cookie", "must be letters, digits, _ or -"));
    }
    Ok(MfaSettings {
        delivery,
        code_ttl: Duration::from_secs(m.code_ttl_secs),
        max_attempts: m.max_attempts,
        super_mandatory: m.super_mandatory,
        super_rollout: rollout.timestamp(),
        trusted_device: Duration::from_secs(u64::from(m.trusted_device_days) * 86_400),
        device_cookie: m.device_cookie.clone(),
    })
}

fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

fn looks_like_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, "test.toml", &no_env)
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let cfg = load(EMBEDDED_DEFAULTS).unwrap();
        assert_eq!(cfg.server.listen.port(), 8080);
        assert_eq!(cfg.admin.listen.port(), 9090);
        assert_eq!(cfg.token.validity, Duration::from_secs(21_600));
        assert!(cfg.token.secret_generated);
        assert!(matches!(cfg.store.backend, Backend::Memory));
        assert_eq!(cfg.rate_limit.auth_per_minute.get(), 10);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load("[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 3\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen_typo"), "{text}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = load("[token]\nvalidity_secs = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("token.validity_secs"), "{err}");
    }

    #[test]
    fn short_secret_is_refused() {
        let err = load("[token]\nsecret = \"change-me\"\n").unwrap_err();
        assert!(err.to_string().contains("token.secret"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let env = |k: &str| match k {
            "JWT_SECRET" => Some("x".repeat(40)),
            "JWT_VALIDITY_SEC" => Some("60".into()),
            _ => None,
        };
        let cfg = Config::from_toml("[token]\nvalidity_secs = 100\n", "t", &env).unwrap();
        assert_eq!(cfg.token.validity, Duration::from_secs(60));
        assert_eq!(cfg.token.secret, "x".repeat(40).into_bytes());
        assert!(!cfg.token.secret_generated);
    }

    #[test]
    fn redis_urls_from_file_or_env() {
        let cfg = load("[store]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n")
            .unwrap();
        let Backend::Redis(r) = cfg.store.backend else {
            panic!()
        };
        assert_eq!(r.urls, vec!["redis://127.0.0.1:6379/0"]);
        assert_eq!(r.timeout, Duration::from_millis(500));
        let env = |k: &str| (k == "REDIS_URL").then(|| "redis://a:1,redis://b:2".to_string());
        let cfg = Config::from_toml("[store]\nbackend = \"redis\"\n", "t", &env).unwrap();
        let Backend::Redis(r) = cfg.store.backend else {
            panic!()
        };
        assert_eq!(r.urls, vec!["redis://a:1", "redis://b:2"]);
        let err = load("[store]\nbackend = \"redis\"\n").unwrap_err();
        assert!(err.to_string().contains("store.redis_url"), "{err}");
    }

    #[test]
    fn route_must_name_known_upstream() {
        let err = load("[[routes]]\nprefix = \"/\"\nupstream = \"nope\"\n").unwrap_err();
        assert!(err.to_string().contains("routes[0].upstream"), "{err}");
    }

    #[test]
    fn trusted_proxies_accept_cidrs_and_addresses() {
        let cfg = load("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.168.1.1\"]\n").unwrap();
        assert_eq!(cfg.server.trusted_proxies.len(), 2);
        let err = load("[server]\ntrusted_proxies = [\"nonsense\"]\n").unwrap_err();
        assert!(
            err.to_string().contains("server.trusted_proxies[0]"),
            "{err}"
        );
    }
}
