//! Raw TOML -> typed settings, one function per section. Every error names its key, so a bad
//! file fails at start, not on first use.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::ConfigError;
use super::raw::{self, BackendKind, DeliveryKind, RawConfig};
use super::settings::*;

pub(super) struct Validator<'a> {
    pub(super) origin: &'a str,
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

pub(super) fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let v = Validator { origin };
    let mut warnings = Vec::new();
    let server = server(&v, &raw.server)?;
    let admin = AdminSettings {
        listen: v.addr("admin.listen", &raw.admin.listen)?,
        token: match raw.admin.token.clone() {
            Some(t) if t.len() < MIN_ADMIN_TOKEN_BYTES => {
                return Err(v.err(
                    "admin.token",
                    format!(
                        "is {} bytes; at least {MIN_ADMIN_TOKEN_BYTES} are required (also check ADMIN_TOKEN)",
                        t.len()
                    ),
                ));
            }
            other => other,
        },
    };
    if server.listen == Some(admin.listen) {
        return Err(v.err("admin.listen", "must differ from server.listen"));
    }
    if server
        .tls
        .as_ref()
        .is_some_and(|t| t.listen == admin.listen)
    {
        return Err(v.err("admin.listen", "must differ from server.tls.listen"));
    }
    let token = token(&v, &raw.token, &mut warnings)?;
    let store = store(&v, &raw.store)?;
    let rate_limit = rate_limit(&v, &raw.rate_limit)?;
    let password = password(&v, &raw.password)?;
    let register = RegisterSettings {
        enabled: raw.register.enabled,
        trial: Duration::from_secs(u64::from(raw.register.trial_days) * 86_400),
    };
    let mfa = mfa_settings(&v, &raw.mfa, &mut warnings)?;
    let sso = sso(&v, raw.sso)?;
    let cors = cors(&v, raw.cors)?;
    let upstreams = upstreams(&v, raw.upstreams, &mut warnings)?;
    let routes = routes(&v, raw.routes, &upstreams)?;
    Ok(Config {
        server,
        admin,
        token,
        store,
        rate_limit,
        password,
        register,
        mfa,
        sso,
        cors,
        upstreams,
        routes,
        warnings,
    })
}

fn server(v: &Validator<'_>, s: &raw::RawServer) -> Result<ServerSettings, ConfigError> {
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
    // `listen = ""` turns the plain listener off, for a gateway that only speaks TLS.
    let listen = match s.listen.trim() {
        "" => None,
        _ => Some(v.addr("server.listen", &s.listen)?),
    };
    let tls = match &s.tls {
        Some(t) => Some(server_tls(v, t, listen)?),
        None if listen.is_none() => {
            return Err(v.err(
                "server.listen",
                "is empty, which turns the plain listener off: that needs [server.tls]",
            ));
        }
        None => None,
    };
    Ok(ServerSettings {
        listen,
        tls,
        trusted_proxies,
        // 0: one worker per core the process may run on (affinity and cgroup quota included).
        threads: match s.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        },
        max_body_bytes: s.max_body_bytes,
        grace_period: Duration::from_secs(s.grace_period_secs),
        shutdown_timeout: Duration::from_secs(s.shutdown_timeout_secs),
        upstream_connect_timeout: Duration::from_millis(s.upstream_connect_timeout_ms),
        upstream_read_timeout: Duration::from_millis(s.upstream_read_timeout_ms),
        access_log: s.access_log,
        access_log_format: s.access_log_format,
        request_id_in_response: s.request_id_in_response,
        work_stealing: s.work_stealing,
        underscore_headers: s.underscore_headers,
        keepalive_timeout: Duration::from_secs(s.keepalive_timeout_secs),
        header_timeout: Duration::from_secs(s.header_timeout_secs),
        max_connections_per_ip: s.max_connections_per_ip,
    })
}

fn server_tls(
    v: &Validator<'_>,
    t: &raw::RawServerTls,
    plain: Option<SocketAddr>,
) -> Result<TlsSettings, ConfigError> {
    let listen = v.addr("server.tls.listen", &t.listen)?;
    if plain.is_some_and(|p| same_port(p, listen)) {
        return Err(v.err(
            "server.tls.listen",
            "must not share its port with server.listen",
        ));
    }
    let files = |prefix: &str, cert: &str, key: &str| {
        for (name, value) in [("cert_file", cert), ("key_file", key)] {
            if value.trim().is_empty() {
                return Err(v.err(format!("{prefix}.{name}"), "must name a PEM file"));
            }
        }
        Ok(CertFiles {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
        })
    };
    let default = files("server.tls", &t.cert_file, &t.key_file)?;
    let mut sni: Vec<SniCert> = Vec::with_capacity(t.sni.len());
    for (i, entry) in t.sni.iter().enumerate() {
        let prefix = format!("server.tls.sni[{i}]");
        let host = sni_host(&entry.host).ok_or_else(|| {
            v.err(
                format!("{prefix}.host"),
                format!(
                    "`{}` is not a host name like api.example.com or *.example.com (clients never send an IP address as SNI)",
                    entry.host
                ),
            )
        })?;
        if sni.iter().any(|o| o.host == host) {
            return Err(v.err(
                format!("{prefix}.host"),
                format!("`{host}` is listed twice"),
            ));
        }
        sni.push(SniCert {
            host,
            files: files(&prefix, &entry.cert_file, &entry.key_file)?,
        });
    }
    Ok(TlsSettings {
        listen,
        default,
        sni,
    })
}

/// Two listen addresses that cannot both be bound: the same port on the same or a wildcard
/// address.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A host name as clients send it in SNI (lower case, no trailing dot), or `*.` and a domain.
fn sni_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let is_name = !name.is_empty()
        && name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    is_name.then_some(host)
}

fn token(
    v: &Validator<'_>,
    t: &raw::RawToken,
    warnings: &mut Vec<String>,
) -> Result<TokenSettings, ConfigError> {
    if t.validity_secs == 0 {
        return Err(v.err(
            "token.validity_secs",
            "must be a positive number of seconds (also check JWT_VALIDITY_SEC)",
        ));
    }
    let secret = match t.secret.clone() {
        Some(secret) if secret.len() < MIN_SECRET_BYTES => {
            return Err(v.err(
                "token.secret",
                format!(
                    "is {} bytes; at least {MIN_SECRET_BYTES} are required (also check JWT_SECRET)",
                    secret.len()
                ),
            ));
        }
        Some(secret) => secret.into_bytes(),
        None => {
            if t.keys.is_empty() {
                warnings.push(
                    "token.secret is not set: using a random secret, so tokens will not survive a restart and instances will not share them".into(),
                );
            }
            // Made at start-up (`Config::generate_missing_secret`), not here.
            Vec::new()
        }
    };
    let mut keys: Vec<TokenKey> = Vec::with_capacity(t.keys.len());
    for (i, k) in t.keys.iter().enumerate() {
        if k.kid.is_empty() || k.kid.len() > 64 || k.kid.chars().any(|c| c.is_control()) {
            return Err(v.err(
                format!("token.keys[{i}].kid"),
                "must be 1 to 64 printable characters",
            ));
        }
        if keys.iter().any(|o| o.kid == k.kid) {
            return Err(v.err(
                format!("token.keys[{i}].kid"),
                format!("`{}` is used twice", k.kid),
            ));
        }
        if k.secret.len() < MIN_SECRET_BYTES {
            return Err(v.err(
                format!("token.keys[{i}].secret"),
                format!(
                    "is {} bytes; at least {MIN_SECRET_BYTES} are required",
                    k.secret.len()
                ),
            ));
        }
        keys.push(TokenKey {
            kid: k.kid.clone(),
            secret: k.secret.clone().into_bytes(),
        });
    }
    Ok(TokenSettings {
        secret,
        secret_generated: false,
        validity: Duration::from_secs(t.validity_secs),
        login_validity: match t.login_validity_secs {
            0 => {
                return Err(v.err(
                    "token.login_validity_secs",
                    "must be a positive number of seconds",
                ));
            }
            n => Duration::from_secs(n),
        },
        max_session: (t.max_session_secs > 0).then(|| Duration::from_secs(t.max_session_secs)),
        keys,
    })
}

fn store(v: &Validator<'_>, s: &raw::RawStore) -> Result<StoreSettings, ConfigError> {
    let users_file = PathBuf::from(&s.users_file);
    if s.users_file.trim().is_empty() {
        return Err(v.err("store.users_file", "must not be empty"));
    }
    let backend = match s.backend {
        BackendKind::Memory => Backend::Memory,
        BackendKind::Redis => Backend::Redis(redis_settings(v, s)?),
    };
    Ok(StoreSettings {
        backend,
        users_file,
    })
}

fn rate_limit(v: &Validator<'_>, r: &raw::RawRateLimit) -> Result<RateLimitSettings, ConfigError> {
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
    Ok(RateLimitSettings {
        auth_per_minute: NonZeroU32::new(r.auth_per_minute)
            .ok_or_else(|| v.err("rate_limit.auth_per_minute", "must be at least 1"))?,
        account_failures: r.account_failures,
        account_client_failures,
        account_window: Duration::from_secs(r.account_window_secs),
    })
}

fn password(v: &Validator<'_>, p: &raw::RawPassword) -> Result<PasswordSettings, ConfigError> {
    Ok(PasswordSettings {
        max_concurrent_hashes: match p.max_concurrent_hashes {
            // Leave a core to the proxy: hashing is the one thing that can fill a CPU.
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1),
            n => n,
        },
        max_queued_hashes: match p.max_queued_hashes {
            0 => return Err(v.err("password.max_queued_hashes", "must be at least 1")),
            n => n,
        },
        hash_priority: p.hash_priority,
        min_length: match p.min_length {
            n if (1..=MAX_PASSWORD_CHARS).contains(&n) => n,
            _ => {
                return Err(v.err(
                    "password.min_length",
                    format!("must be between 1 and {MAX_PASSWORD_CHARS}"),
                ));
            }
        },
    })
}

fn upstreams(
    v: &Validator<'_>,
    raw_upstreams: Vec<raw::RawUpstream>,
    warnings: &mut Vec<String>,
) -> Result<Vec<UpstreamSettings>, ConfigError> {
    let mut upstreams: Vec<UpstreamSettings> = Vec::with_capacity(raw_upstreams.len());
    for (i, u) in raw_upstreams.into_iter().enumerate() {
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
        let tls = upstream_tls(v, &u, &key)?;
        if tls.as_ref().is_some_and(|t| !t.verify) {
            warnings.push(format!(
                "{} = false: the certificates of upstream `{}` are not checked, so anyone on the way can read and change its traffic: for development only",
                key("verify"),
                u.name
            ));
        }
        upstreams.push(UpstreamSettings {
            name: u.name,
            servers: u.servers,
            health_check: Duration::from_secs(u.health_check_secs),
            tls,
        });
    }
    Ok(upstreams)
}

fn upstream_tls(
    v: &Validator<'_>,
    u: &raw::RawUpstream,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<UpstreamTls>, ConfigError> {
    if !u.tls {
        let set = [
            ("sni", u.sni.is_some()),
            ("ca_file", u.ca_file.is_some()),
            ("verify", u.verify.is_some()),
        ];
        if let Some((name, _)) = set.iter().find(|(_, set)| *set) {
            return Err(v.err(key(name), "only applies with tls = true"));
        }
        return Ok(None);
    }
    let sni = match &u.sni {
        None => None,
        Some(name) if rustls::pki_types::ServerName::try_from(name.as_str()).is_ok() => {
            Some(name.clone())
        }
        Some(name) => {
            return Err(v.err(
                key("sni"),
                format!("`{name}` is not a host name or IP address"),
            ));
        }
    };
    let ca_file = match &u.ca_file {
        None => None,
        Some(path) if path.trim().is_empty() => {
            return Err(v.err(key("ca_file"), "must name a PEM file"));
        }
        Some(path) => Some(PathBuf::from(path)),
    };
    let tls = UpstreamTls {
        sni,
        ca_file,
        verify: u.verify.unwrap_or(true),
    };
    for (j, server) in u.servers.iter().enumerate() {
        let name = tls.sni_for(server);
        if rustls::pki_types::ServerName::try_from(name).is_err() {
            return Err(v.err(
                key(&format!("servers[{j}]")),
                format!("`{name}` cannot be sent as a server name: set sni"),
            ));
        }
    }
    Ok(Some(tls))
}

fn routes(
    v: &Validator<'_>,
    raw_routes: Vec<raw::RawRoute>,
    upstreams: &[UpstreamSettings],
) -> Result<Vec<RouteSettings>, ConfigError> {
    let mut routes: Vec<RouteSettings> = Vec::with_capacity(raw_routes.len());
    for (i, r) in raw_routes.into_iter().enumerate() {
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
        let auth = r.auth;
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
                Some(types)
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
            cors: r.cors,
        });
    }
    Ok(routes)
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
    let delivery = match m.delivery {
        DeliveryKind::Log => {
            warnings.push(
                "mfa.delivery = \"log\" writes verification codes to the log: for development only"
                    .into(),
            );
            Delivery::Log
        }
        DeliveryKind::Webhook => {
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
        DeliveryKind::Smtp => {
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
            let tls = s.tls;
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
    if !is_cookie_name(&m.device_cookie) {
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

fn sso(v: &Validator<'_>, raw: raw::RawSso) -> Result<SsoSettings, ConfigError> {
    if raw.state_ttl_secs == 0 {
        return Err(v.err("sso.state_ttl_secs", "must be at least 1"));
    }
    if raw.http_timeout_secs == 0 {
        return Err(v.err("sso.http_timeout_secs", "must be at least 1"));
    }
    if raw.leeway_secs > 600 {
        return Err(v.err("sso.leeway_secs", "must be at most 600"));
    }
    if !is_cookie_name(&raw.binding_cookie) {
        return Err(v.err("sso.binding_cookie", "must be letters, digits, _ or -"));
    }
    let start_per_minute = NonZeroU32::new(raw.start_per_minute)
        .ok_or_else(|| v.err("sso.start_per_minute", "must be at least 1"))?;
    let mut providers: Vec<ProviderSettings> = Vec::with_capacity(raw.providers.len());
    for (i, p) in raw.providers.into_iter().enumerate() {
        let key = |k: &str| format!("sso.providers[{i}].{k}");
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(v.err(key("name"), "must be lower-case letters, digits, - or _"));
        }
        if providers.iter().any(|o| o.name == p.name) {
            return Err(v.err(key("name"), format!("`{}` is defined twice", p.name)));
        }
        if !is_provider_url(&p.issuer) {
            return Err(v.err(
                key("issuer"),
                format!(
                    "`{}` must be an https URL (http only on loopback)",
                    p.issuer
                ),
            ));
        }
        if p.client_id.trim().is_empty() {
            return Err(v.err(key("client_id"), "must not be empty"));
        }
        let client_secret = match p.client_secret {
            Some(secret) if !secret.is_empty() => secret,
            _ => {
                return Err(v.err(
                    key("client_secret"),
                    format!(
                        "is required (or set {})",
                        super::env::provider_secret_env(&p.name)
                    ),
                ));
            }
        };
        if !(p.redirect_uri.starts_with("https://") || p.redirect_uri.starts_with("http://"))
            || p.redirect_uri.parse::<http::Uri>().is_err()
        {
            return Err(v.err(
                key("redirect_uri"),
                format!("`{}` is not an absolute http(s) URL", p.redirect_uri),
            ));
        }
        if !p.scopes.iter().any(|s| s == "openid") {
            return Err(v.err(key("scopes"), "must include \"openid\""));
        }
        if p.allowed_algs.is_empty() {
            return Err(v.err(key("allowed_algs"), "must list at least one algorithm"));
        }
        let allowed_algs = p
            .allowed_algs
            .iter()
            .map(|a| {
                a.parse::<jsonwebtoken::Algorithm>().map_err(|_| {
                    v.err(
                        key("allowed_algs"),
                        format!("`{a}` is not a JWS algorithm such as RS256 or ES256"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let email_domains = match p.email_domains {
            None => None,
            Some(domains) => {
                if domains.is_empty()
                    || domains
                        .iter()
                        .any(|d| d.trim().is_empty() || d.contains('@'))
                {
                    return Err(v.err(
                        key("email_domains"),
                        "must list domains such as example.com (or be left out)",
                    ));
                }
                Some(
                    domains
                        .iter()
                        .map(|d| d.trim().to_ascii_lowercase())
                        .collect(),
                )
            }
        };
        let auto_provision = match p.auto_provision {
            None => None,
            Some(a) if a.org.trim().is_empty() => {
                return Err(v.err(key("auto_provision.org"), "must name an organization id"));
            }
            Some(a) => Some(AutoProvision {
                org: a.org,
                account_type: a.account_type,
            }),
        };
        providers.push(ProviderSettings {
            name: p.name,
            issuer: p.issuer,
            client_id: p.client_id,
            client_secret,
            redirect_uri: p.redirect_uri,
            scopes: p.scopes,
            allowed_algs,
            email_domains,
            auto_provision,
        });
    }
    Ok(SsoSettings {
        state_ttl: Duration::from_secs(raw.state_ttl_secs),
        http_timeout: Duration::from_secs(raw.http_timeout_secs),
        leeway: Duration::from_secs(raw.leeway_secs),
        binding_cookie: raw.binding_cookie,
        start_per_minute,
        providers,
    })
}

fn cors(v: &Validator<'_>, c: raw::RawCors) -> Result<CorsSettings, ConfigError> {
    let mut allowed_origins = Vec::with_capacity(c.allowed_origins.len());
    let mut any_origin = false;
    for (i, origin) in c.allowed_origins.iter().enumerate() {
        if origin == "*" {
            any_origin = true;
            continue;
        }
        if !is_origin(origin) {
            return Err(v.err(
                format!("cors.allowed_origins[{i}]"),
                format!(
                    "`{origin}` is not an origin like https://app.example.com (scheme, host, optional port; no path)"
                ),
            ));
        }
        allowed_origins.push(origin.to_ascii_lowercase());
    }
    if any_origin && c.allow_credentials {
        return Err(v.err(
            "cors.allowed_origins",
            "\"*\" cannot be combined with allow_credentials = true: list the origins",
        ));
    }
    for (i, h) in c.allowed_headers.iter().enumerate() {
        if h.is_empty() || h.parse::<http::HeaderName>().is_err() {
            return Err(v.err(
                format!("cors.allowed_headers[{i}]"),
                format!("`{h}` is not a header name"),
            ));
        }
    }
    Ok(CorsSettings {
        allowed_origins,
        any_origin,
        allowed_headers: c
            .allowed_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        max_age: Duration::from_secs(c.max_age_secs),
        allow_credentials: c.allow_credentials,
    })
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && origin.parse::<http::Uri>().is_ok()
}

fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An issuer URL: https, or http on a loopback host (a provider under test).
pub fn is_provider_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let loopback = matches!(
        uri.host(),
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
    );
    match uri.scheme_str() {
        Some("https") => uri.host().is_some(),
        Some("http") => loopback,
        _ => false,
    }
}
