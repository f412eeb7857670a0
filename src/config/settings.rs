//! The typed settings the gateway runs on, made by `validate` from the raw file; nothing else
//! builds them.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::model::AccountType;

pub use super::raw::{AccessLogFormat, HashPriority, UnderscoreHeaders};

/// A secret shorter than this is refused: HS256 needs at least 256 bits of key.
pub const MIN_SECRET_BYTES: usize = 32;

/// An admin token shorter than this is refused.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// Retry buffering in Pingora holds at most 64 KiB, so a body that is read for a token and then
/// forwarded cannot be larger than that.
pub const MAX_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub token: TokenSettings,
    pub store: StoreSettings,
    pub rate_limit: RateLimitSettings,
    pub password: PasswordSettings,
    pub register: RegisterSettings,
    pub mfa: MfaSettings,
    pub sso: SsoSettings,
    pub cors: CorsSettings,
    pub upstreams: Vec<UpstreamSettings>,
    pub routes: Vec<RouteSettings>,
    /// Things an operator should hear about at start (and from `check-config`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    /// The plain HTTP listener; `None` (`listen = ""`) when only `[server.tls]` serves.
    pub listen: Option<SocketAddr>,
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
    pub access_log_format: AccessLogFormat,
    /// `X-Request-Id` on proxied responses too, as Envoy's `always_set_request_id_in_response`.
    pub request_id_in_response: bool,
    /// The TLS listener (`[server.tls]`).
    pub tls: Option<TlsSettings>,
}

/// `[server.tls]`: a listener that terminates TLS 1.2 and 1.3, offering HTTP/2 and HTTP/1.1.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    pub listen: SocketAddr,
    /// The certificate for clients that name no host, or one no `sni` entry lists.
    pub default: CertFiles,
    /// `[[server.tls.sni]]`, in file order.
    pub sni: Vec<SniCert>,
}

/// A PEM certificate chain (end-entity first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A certificate for one hostname (lower case, no trailing dot), or for every name one label
/// under a domain (`*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    pub host: String,
    pub files: CertFiles,
}

#[derive(Clone, PartialEq)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// The bearer token of the admin API; `None` leaves the API out (its paths are 404).
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// CORS for the gateway's own endpoints, and for routes that opt in.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsSettings {
    /// Exact origins (`scheme://host[:port]`, lower-cased); empty: no cross-origin access.
    pub allowed_origins: Vec<String>,
    /// `"*"` was listed: any origin, and then never with credentials.
    pub any_origin: bool,
    /// Lower-cased request headers a preflight may ask for.
    pub allowed_headers: Vec<String>,
    pub max_age: Duration,
    pub allow_credentials: bool,
}

/// A signing key with its id, for `[[token.keys]]`.
#[derive(Clone, PartialEq)]
pub struct TokenKey {
    pub kid: String,
    pub secret: Vec<u8>,
}

#[derive(Clone, PartialEq)]
pub struct TokenSettings {
    pub secret: Vec<u8>,
    /// True when no secret was configured and a random one was made for this process.
    pub secret_generated: bool,
    /// Lifetime of tokens of the signin family (signin, MFA after signin, single sign-on).
    pub validity: Duration,
    /// Lifetime of tokens of the login family (login, register, MFA after login).
    pub login_validity: Duration,
    /// Absolute session lifetime from sign-in; `None`: sessions slide without end.
    pub max_session: Option<Duration>,
    /// Keys with ids, newest first. Tokens are signed with the first (carrying its `kid`) when
    /// there is one, else with `secret`; a token without `kid` is checked with `secret`.
    pub keys: Vec<TokenKey>,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("secret", &"<redacted>")
            .field("secret_generated", &self.secret_generated)
            .field("validity", &self.validity)
            .field("login_validity", &self.login_validity)
            .field("max_session", &self.max_session)
            .field(
                "keys",
                &self.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    pub backend: Backend,
    /// The memory store's users file, and what `authgate users import` loads into Redis.
    pub users_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Memory,
    Redis(RedisSettings),
}

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq)]
pub struct PasswordSettings {
    /// Hashing threads (resolved: never 0).
    pub max_concurrent_hashes: usize,
    pub max_queued_hashes: usize,
    pub hash_priority: HashPriority,
    pub min_length: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisterSettings {
    pub enabled: bool,
    pub trial: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub name: String,
    pub servers: Vec<String>,
    pub health_check: Duration,
    /// Reach the servers over TLS (`tls = true`).
    pub tls: Option<UpstreamTls>,
}

/// How an upstream is reached over TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The name sent and verified; `None`: each server's own host.
    pub sni: Option<String>,
    /// The CAs to trust; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Whether the certificate is checked at all (`verify = false`: development only).
    pub verify: bool,
}

impl UpstreamTls {
    /// The name sent to and verified for `server` (`host:port`): `sni`, or else its host.
    pub fn sni_for<'a>(&'a self, server: &'a str) -> &'a str {
        match &self.sni {
            Some(sni) => sni,
            None => {
                let host = server.rsplit_once(':').map_or(server, |(host, _)| host);
                host.trim_start_matches('[').trim_end_matches(']')
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Required,
    Optional,
    None,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// CORS answered for this route as for the gateway's own endpoints.
    pub cors: bool,
}

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    Smtp(SmtpSettings),
    Webhook {
        url: String,
    },
    /// Development only: the code is written to the log.
    Log,
}

#[derive(Clone, PartialEq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

/// Single sign-on: this gateway as an OpenID Connect relying party.
#[derive(Debug, Clone, PartialEq)]
pub struct SsoSettings {
    /// How long a login started at a provider may take to come back.
    pub state_ttl: Duration,
    /// Deadline of every call to a provider: discovery, JWKS and the code exchange.
    pub http_timeout: Duration,
    /// Clock skew allowed on an ID token's `exp` and `iat`.
    pub leeway: Duration,
    /// The cookie that binds a started login to the browser that started it.
    pub binding_cookie: String,
    /// Starts per minute per client IP: each one holds server-side state until it expires.
    pub start_per_minute: NonZeroU32,
    pub providers: Vec<ProviderSettings>,
}

#[derive(Clone, PartialEq)]
pub struct ProviderSettings {
    pub name: String,
    /// Exactly as the provider writes it in `iss`; discovery is `{issuer}/.well-known/...`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// The only algorithms an ID token may be signed with (never `none`).
    pub allowed_algs: Vec<jsonwebtoken::Algorithm>,
    /// Lower-cased domains a first link by email may come from; `None` allows any.
    pub email_domains: Option<Vec<String>>,
    pub auto_provision: Option<AutoProvision>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("scopes", &self.scopes)
            .field("allowed_algs", &self.allowed_algs)
            .field("email_domains", &self.email_domains)
            .field("auto_provision", &self.auto_provision)
            .finish()
    }
}

/// Users the provider vouches for but the store does not know are created, in this
/// organization, with this account type.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoProvision {
    pub org: String,
    pub account_type: AccountType,
}
