//! Prometheus metrics: every series the gateway exports, the handles the request path counts
//! with, and the text the admin listener's `/metrics` serves.
//!
//! Labels only ever take configured values (route prefixes, upstream names and server
//! addresses), endpoint names, fixed outcome words and status codes: never a user's, a token's,
//! a path's or a client address's value, so the number of series stays bounded.
//!
//! The request path looks no label up: handles for a route are resolved when the routes are
//! built (`RequestSeries`, kept with `upstream::Route`), its per-status counters on the first
//! request with that status, and every fixed label set here at start, where it also makes its
//! series exist at 0. Counting a request is then an atomic add or two.
//!
//! A metric that cannot be made (which only a wrong name here could cause, and a unit test
//! rules out) is logged and left out of `/metrics`; counting on it does nothing.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::endpoints::Endpoint;
use crate::error::GatewayError;
use crate::live::Live;
use crate::token::TokenError;

/// The `Content-Type` of `render`'s text (Prometheus text exposition format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Request and upstream durations: from half a millisecond to ten seconds.
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Redis calls: a tenth of a millisecond on loopback, up to the store's timeout.
const REDIS_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The route label of requests that matched no route and no endpoint (404s, and requests
/// refused before routing: an overlong target, a malformed path).
pub const NO_ROUTE: &str = "none";

/// How an authentication ended, on a route that checks tokens or an endpoint that needs the
/// caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Ok,
    /// No token in any location.
    Missing,
    Expired,
    /// Bad signature, algorithm or shape.
    Invalid,
    /// The token's session was revoked, or ended.
    Revoked,
    /// Account type or organization not allowed on the route.
    Forbidden,
    /// The account or its organization is disabled.
    Disabled,
}

impl AuthOutcome {
    const ALL: [AuthOutcome; 7] = [
        AuthOutcome::Ok,
        AuthOutcome::Missing,
        AuthOutcome::Expired,
        AuthOutcome::Invalid,
        AuthOutcome::Revoked,
        AuthOutcome::Forbidden,
        AuthOutcome::Disabled,
    ];

    fn label(self) -> &'static str {
        match self {
            AuthOutcome::Ok => "ok",
            AuthOutcome::Missing => "missing",
            AuthOutcome::Expired => "expired",
            AuthOutcome::Invalid => "invalid",
            AuthOutcome::Revoked => "revoked",
            AuthOutcome::Forbidden => "forbidden",
            AuthOutcome::Disabled => "disabled",
        }
    }

    /// The one mapping from a refusal to its reason; `None` for errors that are not a verdict
    /// on the caller (a store outage, a rate limit, a malformed request).
    pub fn of(error: &GatewayError) -> Option<AuthOutcome> {
        match error {
            GatewayError::MissingToken => Some(AuthOutcome::Missing),
            GatewayError::Token(TokenError::Expired) => Some(AuthOutcome::Expired),
            GatewayError::Token(
                TokenError::InvalidSignature | TokenError::InvalidAlgorithm | TokenError::Malformed,
            ) => Some(AuthOutcome::Invalid),
            GatewayError::SessionExpired => Some(AuthOutcome::Revoked),
            GatewayError::Forbidden => Some(AuthOutcome::Forbidden),
            GatewayError::AccountDisabled | GatewayError::FirmDisabled => {
                Some(AuthOutcome::Disabled)
            }
            _ => None,
        }
    }
}

/// What became of a request to a credential endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    SigninOk,
    SigninFailed,
    LoginOk,
    LoginFailed,
    /// A verification code went out (after a right password, or a single sign-on).
    MfaSent,
    MfaVerified,
    MfaFailed,
    SsoOk,
    SsoFailed,
}

impl Credential {
    const ALL: [Credential; 9] = [
        Credential::SigninOk,
        Credential::SigninFailed,
        Credential::LoginOk,
        Credential::LoginFailed,
        Credential::MfaSent,
        Credential::MfaVerified,
        Credential::MfaFailed,
        Credential::SsoOk,
        Credential::SsoFailed,
    ];

    /// `(endpoint, outcome)`.
    fn labels(self) -> [&'static str; 2] {
        match self {
            Credential::SigninOk => ["signin", "ok"],
            Credential::SigninFailed => ["signin", "failed"],
            Credential::LoginOk => ["login", "ok"],
            Credential::LoginFailed => ["login", "failed"],
            Credential::MfaSent => ["mfa", "sent"],
            Credential::MfaVerified => ["mfa", "verified"],
            Credential::MfaFailed => ["mfa", "failed"],
            Credential::SsoOk => ["sso", "ok"],
            Credential::SsoFailed => ["sso", "failed"],
        }
    }
}

/// Why a Redis call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFailure {
    /// Redis answered with an error, or the connection broke.
    Error,
    /// No answer within `store.redis_timeout_ms`.
    Timeout,
    /// Not tried: the change listener has seen Redis down.
    Unreachable,
}

impl RedisFailure {
    const ALL: [RedisFailure; 3] = [
        RedisFailure::Error,
        RedisFailure::Timeout,
        RedisFailure::Unreachable,
    ];

    fn label(self) -> &'static str {
        match self {
            RedisFailure::Error => "error",
            RedisFailure::Timeout => "timeout",
            RedisFailure::Unreachable => "unreachable",
        }
    }
}

/// A counter, or nothing if it could not be made.
#[derive(Clone, Default)]
pub struct Counter(Option<IntCounter>);

impl Counter {
    pub fn inc(&self) {
        if let Some(c) = &self.0 {
            c.inc();
        }
    }
}

/// A latency histogram in seconds, or nothing if it could not be made.
#[derive(Clone, Default)]
pub struct Latency(Option<Histogram>);

impl Latency {
    pub fn observe(&self, elapsed: Duration) {
        if let Some(h) = &self.0 {
            h.observe(elapsed.as_secs_f64());
        }
    }
}

/// Requests by status for one route label, each status's counter resolved on its first use.
pub struct StatusCounters {
    family: Option<IntCounterVec>,
    route: Box<str>,
    /// Indexed by status code; 0 is a request that got no response (the client went away).
    slots: Box<[OnceLock<Counter>]>,
}

/// Status codes are three digits; the few above 599, which HTTP does not define, count as 599.
const STATUS_SLOTS: usize = 600;

impl StatusCounters {
    fn new(family: Option<IntCounterVec>, route: &str) -> StatusCounters {
        StatusCounters {
            family,
            route: route.into(),
            slots: (0..STATUS_SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn inc(&self, status: u16) {
        let index = usize::from(status).min(STATUS_SLOTS - 1);
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        slot.get_or_init(|| {
            let status = index.to_string();
            Counter(self.family.as_ref().and_then(|f| {
                f.get_metric_with_label_values(&[&*self.route, status.as_str()])
                    .ok()
            }))
        })
        .inc();
    }
}

/// What is counted of every request under one route label: a route's prefix, an endpoint's
/// name, or `none`.
pub struct RequestSeries {
    requests: StatusCounters,
    duration: Latency,
}

impl RequestSeries {
    /// The series of a route, resolved once when the routes are built.
    pub fn route(prefix: &str) -> RequestSeries {
        let m = metrics();
        RequestSeries {
            requests: StatusCounters::new(m.requests.clone(), prefix),
            duration: child(&m.request_duration, &[prefix]),
        }
    }

    pub fn record(&self, status: u16, elapsed: Duration) {
        self.requests.inc(status);
        self.duration.observe(elapsed);
    }
}

/// Every series the gateway exports.
pub struct Metrics {
    registry: Registry,
    requests: Option<IntCounterVec>,
    request_duration: Option<HistogramVec>,
    upstream_duration: Option<HistogramVec>,
    upstream_up: Option<IntGaugeVec>,
    rate_limited: Option<IntCounterVec>,
    /// Indexed by `AuthOutcome`, `Credential` and `RedisFailure`, declared in `ALL`'s order.
    auth: [Counter; AuthOutcome::ALL.len()],
    credentials: [Counter; Credential::ALL.len()],
    redis_duration: Latency,
    redis_errors: [Counter; RedisFailure::ALL.len()],
    reloads_ok: Counter,
    reloads_failed: Counter,
    access_log_dropped: Counter,
    password_rescues: Counter,
    /// The gateway's own endpoints, indexed by `Endpoint`.
    endpoints: Vec<RequestSeries>,
    no_route: RequestSeries,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics, made on first use.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Count an authentication's verdict: `Ok` for a caller let through, the reason of a refusal
/// (errors that are no verdict on the caller are not counted).
pub fn record_auth(verdict: Result<(), &GatewayError>) {
    let outcome = match verdict {
        Ok(()) => Some(AuthOutcome::Ok),
        Err(e) => AuthOutcome::of(e),
    };
    if let Some(outcome) = outcome {
        metrics().auth(outcome);
    }
}

/// Count one configuration reload: `ok` when the new configuration was swapped in, not when it
/// was refused and the previous one kept.
pub fn record_reload(ok: bool) {
    let m = metrics();
    if ok {
        m.reloads_ok.inc();
    } else {
        m.reloads_failed.inc();
    }
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let reg = Reg(&registry);
        let requests = reg.counter_vec(
            "authgate_requests_total",
            "Requests answered, by route (prefix, endpoint name, or none) and status code",
            &["route", "status"],
        );
        let request_duration = reg.histogram_vec(
            "authgate_request_duration_seconds",
            "Time from the arrival of a request to the end of its answer, by route",
            &["route"],
            &REQUEST_BUCKETS,
        );
        let upstream_duration = reg.histogram_vec(
            "authgate_upstream_duration_seconds",
            "Time from sending a request upstream to receiving its response header, by upstream",
            &["upstream"],
            &REQUEST_BUCKETS,
        );
        let upstream_up = reg.gauge_vec(
            "authgate_upstream_server_up",
            "Whether an upstream server passes its health check (1) or not (0)",
            &["upstream", "server"],
        );
        let rate_limited = reg.counter_vec(
            "authgate_rate_limited_total",
            "Requests refused by a rate limit, by bucket (auth, sso_start, account, or a route prefix)",
            &["bucket"],
        );
        for bucket in ["auth", "sso_start", "account"] {
            child_counter(&rate_limited, &[bucket]);
        }
        let auth_family = reg.counter_vec(
            "authgate_auth_outcomes_total",
            "Token authentications, by outcome: ok, missing, expired, invalid, revoked, forbidden, disabled",
            &["outcome"],
        );
        let auth = AuthOutcome::ALL.map(|o| child_counter(&auth_family, &[o.label()]));
        let credential_family = reg.counter_vec(
            "authgate_credential_outcomes_total",
            "Credential endpoints, by endpoint (signin, login, mfa, sso) and outcome",
            &["endpoint", "outcome"],
        );
        let credentials = Credential::ALL.map(|c| child_counter(&credential_family, &c.labels()));
        let redis_duration = Latency(reg.histogram(
            "authgate_redis_duration_seconds",
            "Duration of Redis calls made by the store, failed ones included",
            &REDIS_BUCKETS,
        ));
        let redis_family = reg.counter_vec(
            "authgate_redis_errors_total",
            "Failed Redis calls, by kind: error, timeout, unreachable",
            &["kind"],
        );
        let redis_errors = RedisFailure::ALL.map(|k| child_counter(&redis_family, &[k.label()]));
        let reloads = reg.counter_vec(
            "authgate_config_reloads_total",
            "Configuration reloads, by outcome: ok (swapped in) or failed (refused, previous kept)",
            &["outcome"],
        );
        let build_info = reg.gauge_vec(
            "authgate_build_info",
            "The running build: always 1, labelled with the version",
            &["version"],
        );
        if let Some(g) = build_info.as_ref().and_then(|f| {
            f.get_metric_with_label_values(&[env!("CARGO_PKG_VERSION")])
                .ok()
        }) {
            g.set(1);
        }
        let access_log_dropped = Counter(reg.counter(
            "authgate_access_log_dropped_total",
            "JSON access-log lines dropped because the log writer fell behind",
        ));
        let password_rescues = Counter(reg.counter(
            "authgate_password_rescues_total",
            "Password checks run again at nice 19 because other programs kept the idle hashing \
             threads off the CPU",
        ));
        let series = |route: &str| RequestSeries {
            requests: StatusCounters::new(requests.clone(), route),
            duration: child(&request_duration, &[route]),
        };
        let endpoints = Endpoint::ALL.iter().map(|e| series(e.name())).collect();
        let no_route = series(NO_ROUTE);
        Metrics {
            reloads_ok: child_counter(&reloads, &["ok"]),
            reloads_failed: child_counter(&reloads, &["failed"]),
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_up,
            rate_limited,
            auth,
            credentials,
            redis_duration,
            redis_errors,
            access_log_dropped,
            password_rescues,
            endpoints,
            no_route,
        }
    }

    /// The series of one of the gateway's own endpoints.
    pub fn endpoint(&self, endpoint: Endpoint) -> &RequestSeries {
        self.endpoints
            .get(endpoint as usize)
            .unwrap_or(&self.no_route)
    }

    /// Requests that matched no route and no endpoint.
    pub fn no_route(&self) -> &RequestSeries {
        &self.no_route
    }

    /// The upstream-duration histogram of one upstream, resolved when the routes are built.
    pub fn upstream_latency(&self, upstream: &str) -> Latency {
        child(&self.upstream_duration, &[upstream])
    }

    /// The refusal counter of one rate-limit bucket, resolved when the limiter is built.
    pub fn rate_limited(&self, bucket: &str) -> Counter {
        child_counter(&self.rate_limited, &[bucket])
    }

    pub fn auth(&self, outcome: AuthOutcome) {
        self.auth[outcome as usize].inc();
    }

    pub fn credential(&self, outcome: Credential) {
        self.credentials[outcome as usize].inc();
    }

    /// One Redis call, and how it failed if it did.
    pub fn redis_call(&self, elapsed: Duration, failure: Option<RedisFailure>) {
        self.redis_duration.observe(elapsed);
        if let Some(failure) = failure {
            self.redis_errors[failure as usize].inc();
        }
    }

    pub fn access_log_dropped(&self) {
        self.access_log_dropped.inc();
    }

    pub fn password_rescued(&self) {
        self.password_rescues.inc();
    }

    /// The exposition text of every series, with upstream health read from `live` now (so a
    /// reload that removed an upstream also removes its series).
    pub fn render(&self, live: &Live) -> Vec<u8> {
        if let Some(up) = &self.upstream_up {
            up.reset();
            for upstream in live.router.upstreams() {
                for (server, healthy) in upstream.health() {
                    if let Ok(g) =
                        up.get_metric_with_label_values(&[upstream.name.as_str(), server])
                    {
                        g.set(i64::from(healthy));
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        out
    }
}

/// Registers what it makes; a metric that cannot be made or registered is logged and left out.
struct Reg<'a>(&'a Registry);

impl Reg<'_> {
    fn add<M: Collector + Clone + 'static>(
        &self,
        name: &str,
        made: prometheus::Result<M>,
    ) -> Option<M> {
        let registered = made.and_then(|m| self.0.register(Box::new(m.clone())).map(|()| m));
        registered
            .inspect_err(|e| tracing::error!("metric {name} not available: {e}"))
            .ok()
    }

    fn counter(&self, name: &str, help: &str) -> Option<IntCounter> {
        self.add(name, IntCounter::with_opts(Opts::new(name, help)))
    }

    fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> Option<IntCounterVec> {
        self.add(name, IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Option<IntGaugeVec> {
        self.add(name, IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Option<Histogram> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(name, Histogram::with_opts(opts))
    }

    fn histogram_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> Option<HistogramVec> {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(name, HistogramVec::new(opts, labels))
    }
}

/// The counter of one label set, made (at 0) if it does not exist yet.
fn child_counter(family: &Option<IntCounterVec>, labels: &[&str]) -> Counter {
    Counter(
        family
            .as_ref()
            .and_then(|f| f.get_metric_with_label_values(labels).ok()),
    )
}

fn child(family: &Option<HistogramVec>, labels: &[&str]) -> Latency {
    Latency(
        family
            .as_ref()
            .and_then(|f| f.get_metric_with_label_values(labels).ok()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&metrics().registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_metric_is_made_and_fixed_series_start_at_zero() {
        let m = metrics();
        assert!(m.requests.is_some() && m.request_duration.is_some());
        assert!(m.upstream_duration.is_some() && m.upstream_up.is_some());
        assert!(m.rate_limited.is_some() && m.redis_duration.0.is_some());
        let text = text();
        for line in [
            "authgate_auth_outcomes_total{outcome=\"revoked\"} ",
            "authgate_credential_outcomes_total{endpoint=\"mfa\",outcome=\"sent\"} ",
            "authgate_config_reloads_total{outcome=\"failed\"} ",
            "authgate_config_reloads_total{outcome=\"ok\"} ",
            "authgate_redis_errors_total{kind=\"timeout\"} ",
            "authgate_rate_limited_total{bucket=\"auth\"} ",
            "authgate_access_log_dropped_total ",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains(&format!(
            "authgate_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn statuses_are_counted_per_route() {
        let series = RequestSeries::route("/metrics-test");
        series.record(200, Duration::from_millis(3));
        series.record(200, Duration::from_millis(3));
        series.record(401, Duration::from_millis(1));
        series.record(0, Duration::from_millis(1));
        let text = text();
        assert!(text.contains("authgate_requests_total{route=\"/metrics-test\",status=\"200\"} 2"));
        assert!(text.contains("authgate_requests_total{route=\"/metrics-test\",status=\"401\"} 1"));
        assert!(text.contains("authgate_requests_total{route=\"/metrics-test\",status=\"0\"} 1"));
        assert!(
            text.contains("authgate_request_duration_seconds_count{route=\"/metrics-test\"} 4")
        );
    }

    #[test]
    fn fixed_sets_are_indexed_in_declaration_order() {
        for (i, o) in AuthOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, o) in Credential::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
        for (i, o) in RedisFailure::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }

    #[test]
    fn refusals_map_to_reasons() {
        assert_eq!(
            AuthOutcome::of(&GatewayError::MissingToken),
            Some(AuthOutcome::Missing)
        );
        assert_eq!(
            AuthOutcome::of(&TokenError::Expired.into()),
            Some(AuthOutcome::Expired)
        );
        assert_eq!(
            AuthOutcome::of(&TokenError::Malformed.into()),
            Some(AuthOutcome::Invalid)
        );
        assert_eq!(
            AuthOutcome::of(&GatewayError::SessionExpired),
            Some(AuthOutcome::Revoked)
        );
        assert_eq!(
            AuthOutcome::of(&GatewayError::FirmDisabled),
            Some(AuthOutcome::Disabled)
        );
        assert_eq!(AuthOutcome::of(&GatewayError::NotFound), None);
    }
}
