//! The TOML file exactly as operators write it: every table refuses unknown keys.
//!
//! Nothing outside `config` reads these structs; `Config::validate` turns them into typed values.

use serde::Deserialize;

use super::settings::{AuthMode, SmtpTls};
use crate::model::AccountType;

/// `store.backend`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Memory,
    Redis,
}

/// `mfa.delivery`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryKind {
    Smtp,
    Webhook,
    Log,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub admin: RawAdmin,
    pub token: RawToken,
    pub store: RawStore,
    pub rate_limit: RawRateLimit,
    pub password: RawPassword,
    pub register: RawRegister,
    pub mfa: RawMfa,
    pub sso: RawSso,
    pub cors: RawCors,
    pub upstreams: Vec<RawUpstream>,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub trusted_proxies: Vec<String>,
    pub threads: usize,
    pub max_body_bytes: usize,
    pub grace_period_secs: u64,
    pub shutdown_timeout_secs: u64,
    pub upstream_connect_timeout_ms: u64,
    pub upstream_read_timeout_ms: u64,
    pub access_log: bool,
    pub work_stealing: bool,
    pub underscore_headers: UnderscoreHeaders,
    pub keepalive_timeout_secs: u64,
    pub header_timeout_secs: u64,
    pub max_connections_per_ip: usize,
    pub access_log_format: AccessLogFormat,
    /// Also tell clients the request id on proxied responses (the gateway's own answers always
    /// carry it).
    pub request_id_in_response: bool,
    /// `[server.tls]`: a second listener that terminates TLS.
    pub tls: Option<RawServerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    #[serde(default = "default_tls_listen")]
    pub listen: String,
    pub cert_file: String,
    pub key_file: String,
    /// `[[server.tls.sni]]`: more hostnames, each with its own certificate.
    #[serde(default)]
    pub sni: Vec<RawSniCert>,
}

fn default_tls_listen() -> String {
    "0.0.0.0:8443".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSniCert {
    pub host: String,
    pub cert_file: String,
    pub key_file: String,
}

/// `server.access_log_format`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One `key=value` line per request, through the log's usual formatter.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `password.hash_priority`: how the hashing threads yield the CPU to the proxy.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HashPriority {
    /// Linux's `SCHED_IDLE`: hashing runs only on CPU time nothing else wants, so proxied
    /// traffic keeps its latency through a sign-in storm. While the gateway's own traffic keeps
    /// its cores busy, checks wait and sign-ins get 503 after 3 s; while other programs keep
    /// them busy, a check that has waited is run again on a rescue thread at nice 19.
    #[default]
    Idle,
    /// Nice 19, the lowest, in short time slices: hashing runs freely on spare CPU time, and a
    /// saturated core still gives it about 1.5 % of its time, against the proxy's workers too.
    Low,
}

/// What happens to request headers whose name contains `_` (nginx: `underscores_in_headers`).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreHeaders {
    /// Removed before the request is forwarded (nginx's default).
    #[default]
    Drop,
    /// Forwarded, except spellings of the gateway's own headers (`X_User_Id`, ...).
    Keep,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "0.0.0.0:8080".into(),
            trusted_proxies: Vec::new(),
            threads: 0,
            max_body_bytes: 64 * 1024,
            grace_period_secs: 1,
            shutdown_timeout_secs: 5,
            upstream_connect_timeout_ms: 2_000,
            upstream_read_timeout_ms: 60_000,
            access_log: true,
            work_stealing: false,
            underscore_headers: UnderscoreHeaders::Drop,
            keepalive_timeout_secs: 60,
            header_timeout_secs: 10,
            max_connections_per_ip: 256,
            access_log_format: AccessLogFormat::Text,
            request_id_in_response: false,
            tls: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub listen: String,
    /// Enables the admin API (`POST /admin/revoke`); or the environment variable `ADMIN_TOKEN`.
    pub token: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:9090".into(),
            token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawToken {
    pub secret: Option<String>,
    pub validity_secs: u64,
    /// Lifetime of tokens of sessions started by login or register (seed 003: 24 hours).
    pub login_validity_secs: u64,
    /// Absolute session lifetime from sign-in, whatever refreshes; 0 turns the cap off.
    pub max_session_secs: u64,
    /// Signing keys with ids, newest first: new tokens are signed with the first.
    pub keys: Vec<RawTokenKey>,
}

impl Default for RawToken {
    fn default() -> Self {
        RawToken {
            secret: None,
            validity_secs: 21_600,
            login_validity_secs: 86_400,
            max_session_secs: 30 * 86_400,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenKey {
    pub kid: String,
    pub secret: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCors {
    pub allowed_origins: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub max_age_secs: u64,
    pub allow_credentials: bool,
}

impl Default for RawCors {
    fn default() -> Self {
        RawCors {
            allowed_origins: Vec::new(),
            allowed_headers: vec![
                "content-type".into(),
                "authorization".into(),
                "x-access-token".into(),
                "x-request-id".into(),
            ],
            max_age_secs: 600,
            allow_credentials: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub backend: BackendKind,
    pub redis_url: Option<RedisUrls>,
    pub users_file: String,
    pub redis_key_prefix: String,
    pub redis_timeout_ms: u64,
    pub session_cache_secs: u64,
    pub seed_users: bool,
}

/// One URL, or the seed nodes of a Redis Cluster.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RedisUrls {
    One(String),
    Many(Vec<String>),
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            backend: BackendKind::Memory,
            redis_url: None,
            users_file: "conf/users.toml".into(),
            redis_key_prefix: "authgate:".into(),
            redis_timeout_ms: 500,
            session_cache_secs: 30,
            seed_users: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    pub auth_per_minute: u32,
    pub account_failures: u32,
    /// Defaults to `account_failures`.
    pub account_client_failures: Option<u32>,
    pub account_window_secs: u64,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            auth_per_minute: 10,
            account_failures: 5,
            account_client_failures: None,
            account_window_secs: 300,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPassword {
    /// Hashing threads; 0 picks one fewer than the cores the process may use (at least one).
    pub max_concurrent_hashes: usize,
    /// Checks waiting for a hashing thread; past it, sign-ins get 503 at once.
    pub max_queued_hashes: usize,
    /// The hashing threads' CPU priority.
    pub hash_priority: HashPriority,
    /// Shortest password accepted by register and change-password.
    pub min_length: usize,
}

impl Default for RawPassword {
    fn default() -> Self {
        RawPassword {
            max_concurrent_hashes: 0,
            max_queued_hashes: 32,
            hash_priority: HashPriority::Idle,
            min_length: 12,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRegister {
    pub enabled: bool,
    pub trial_days: u32,
}

impl Default for RawRegister {
    fn default() -> Self {
        RawRegister {
            enabled: true,
            trial_days: 14,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    pub servers: Vec<String>,
    #[serde(default = "default_health_check_secs")]
    pub health_check_secs: u64,
    /// Reach the servers over TLS.
    #[serde(default)]
    pub tls: bool,
    /// The name sent (SNI) and verified; default: each server's host.
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM file of the CAs to trust instead of the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// `false` accepts any certificate: development only.
    #[serde(default)]
    pub verify: Option<bool>,
}

fn default_health_check_secs() -> u64 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: String,
    pub upstream: String,
    #[serde(default = "default_auth")]
    pub auth: AuthMode,
    #[serde(default)]
    pub account_types: Option<Vec<AccountType>>,
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
    #[serde(default)]
    pub allow_encoded_slashes: bool,
    #[serde(default)]
    pub org_tiers: Option<Vec<String>>,
    #[serde(default)]
    pub org_ids: Option<Vec<String>>,
    /// Answer CORS for this route too (the gateway's own endpoints always do).
    #[serde(default)]
    pub cors: bool,
}

fn default_auth() -> AuthMode {
    AuthMode::Required
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMfa {
    pub delivery: DeliveryKind,
    pub webhook_url: Option<String>,
    pub code_ttl_secs: u64,
    pub max_attempts: u32,
    pub super_mandatory: bool,
    pub super_rollout_date: String,
    pub trusted_device_days: u32,
    pub device_cookie: String,
    pub smtp: RawSmtp,
}

impl Default for RawMfa {
    fn default() -> Self {
        RawMfa {
            delivery: DeliveryKind::Log,
            webhook_url: None,
            code_ttl_secs: 600,
            max_attempts: 5,
            super_mandatory: false,
            super_rollout_date: "2026-01-01T00:00:00Z".into(),
            trusted_device_days: 30,
            device_cookie: "authgate_device".into(),
            smtp: RawSmtp::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSmtp {
    pub host: String,
    pub port: u16,
    pub from: String,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    pub timeout_secs: u64,
}

impl Default for RawSmtp {
    fn default() -> Self {
        RawSmtp {
            host: "127.0.0.1".into(),
            port: 25,
            from: "no-reply@example.com".into(),
            tls: SmtpTls::None,
            username: None,
            password: None,
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSso {
    pub state_ttl_secs: u64,
    pub http_timeout_secs: u64,
    pub leeway_secs: u64,
    pub binding_cookie: String,
    pub start_per_minute: u32,
    pub providers: Vec<RawProvider>,
}

impl Default for RawSso {
    fn default() -> Self {
        RawSso {
            state_ttl_secs: 600,
            http_timeout_secs: 5,
            leeway_secs: 60,
            binding_cookie: "authgate_sso".into(),
            start_per_minute: 60,
            providers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// Or the environment variable `SSO_<NAME>_CLIENT_SECRET`.
    #[serde(default)]
    pub client_secret: Option<String>,
    pub redirect_uri: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_algs")]
    pub allowed_algs: Vec<String>,
    #[serde(default)]
    pub email_domains: Option<Vec<String>>,
    #[serde(default)]
    pub auto_provision: Option<RawAutoProvision>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_algs() -> Vec<String> {
    vec!["RS256".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoProvision {
    pub org: String,
    #[serde(default = "default_provisioned_type")]
    pub account_type: AccountType,
}

fn default_provisioned_type() -> AccountType {
    AccountType::User
}
