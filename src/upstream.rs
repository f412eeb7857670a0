//! Routes and upstreams: longest-prefix matching, load-balanced peers, identity headers.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderName;
use pingora::connectors::TransportConnector;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};

use crate::config::{
    AuthMode, Config, RouteSettings, ServerSettings, UnderscoreHeaders, UpstreamSettings,
};
use crate::metrics::{Latency, RequestSeries, metrics};
use crate::model::{AccountType, Org};
use crate::ratelimit::RateLimiter;
use crate::store::LimitStore;
use crate::token::jwt::Verified;

/// Headers that carry the caller's identity to the upstream. Whatever a client sends under
/// these names is removed first, on every route, so only the gateway can set them.
pub const IDENTITY_HEADERS: [&str; 5] = [
    "x-user-id",
    "x-user-email",
    "x-account-type",
    "x-session-id",
    "x-customer-id",
];

pub struct Upstream {
    pub name: String,
    /// What it was built from, so a reload can tell whether it changed.
    settings: UpstreamSettings,
    timeouts: (Duration, Duration),
    /// The CA certificates of `ca_file`, as read when it was built.
    ca: Option<Arc<CaType>>,
    /// The servers and their health, kept up to date by Pingora's health checks.
    pub lb: LoadBalancer<RoundRobin>,
    pub health_check: Duration,
    /// Every server with its peer prebuilt, in a fixed order for taking turns.
    servers: Vec<(Backend, HttpPeer)>,
    /// Whether each server passed its last health check, in the same order: what Pingora's
    /// health state says, copied after each check so that choosing a server reads a flag
    /// rather than hashing the backend to look it up (~0.8k instructions a request).
    up: Vec<AtomicBool>,
    /// Each server's address as text, in the same order, for the access log and metrics.
    addresses: Vec<String>,
    next: AtomicUsize,
    /// Time from sending a request to this upstream to its response header.
    pub latency: Latency,
}

impl Upstream {
    fn build(
        settings: &UpstreamSettings,
        server: &ServerSettings,
        ca: Option<Arc<CaType>>,
    ) -> std::io::Result<Upstream> {
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(settings.servers.iter().map(String::as_str))?;
        // Each backend is an address one of the `host:port` servers resolved to; over TLS
        // without `sni`, the server's host is the name sent and verified.
        let mut host_of: HashMap<std::net::SocketAddr, &str> = HashMap::new();
        if settings.tls.as_ref().is_some_and(|t| t.sni.is_none()) {
            for s in &settings.servers {
                for addr in s.to_socket_addrs()? {
                    host_of.entry(addr).or_insert(s.as_str());
                }
            }
        }
        let servers: Vec<(Backend, HttpPeer)> = lb
            .backends()
            .get_backend()
            .iter()
            .map(|backend| {
                let mut peer = match &settings.tls {
                    None => HttpPeer::new(backend.addr.clone(), false, String::new()),
                    Some(tls) => {
                        let server = match &backend.addr {
                            SocketAddr::Inet(addr) => host_of.get(addr).copied().unwrap_or(""),
                            SocketAddr::Unix(_) => "",
                        };
                        let mut peer =
                            HttpPeer::new(backend.addr.clone(), true, tls.sni_for(server).into());
                        peer.options.verify_cert = tls.verify;
                        peer.options.verify_hostname = tls.verify;
                        peer.options.ca = ca.clone();
                        peer
                    }
                };
                peer.options.connection_timeout = Some(server.upstream_connect_timeout);
                peer.options.read_timeout = Some(server.upstream_read_timeout);
                (backend.clone(), peer)
            })
            .collect::<Vec<(Backend, HttpPeer)>>();
        if settings.tls.is_some() {
            lb.set_health_check(Box::new(TlsHealthCheck {
                peers: servers.clone(),
                connector: TransportConnector::new(None),
            }));
        } else {
            lb.set_health_check(TcpHealthCheck::new());
        }
        lb.health_check_frequency = Some(settings.health_check);
        let up = servers
            .iter()
            .map(|(backend, _)| AtomicBool::new(lb.backends().ready(backend)))
            .collect();
        Ok(Upstream {
            name: settings.name.clone(),
            settings: settings.clone(),
            timeouts: upstream_timeouts(server),
            addresses: servers.iter().map(|(b, _)| b.addr.to_string()).collect(),
            ca,
            lb,
            health_check: settings.health_check,
            up,
            servers,
            next: AtomicUsize::new(0),
            latency: metrics().upstream_latency(&settings.name),
        })
    }

    /// The next healthy server, round robin: its index and the peer to connect to. When every
    /// server is marked down, the next one is tried anyway: the health check may simply not have
    /// seen it come back yet (a server that was down at start serves as soon as it is up), and a
    /// server that really is down costs one refused connection and a JSON 502.
    ///
    /// Pingora's `LoadBalancer::select` does the same through a hash set of visited backends
    /// and a clone of the chosen one, about 1.6k instructions a request; taking turns over the
    /// prebuilt list and asking the same health state costs a fraction of that.
    pub fn select(&self) -> Option<(usize, &HttpPeer)> {
        let n = self.servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| start.wrapping_add(i) % n)
            .filter_map(|i| self.servers.get(i).map(|s| (i, s)))
            .find(|(i, _)| self.up.get(*i).is_some_and(|up| up.load(Ordering::Relaxed)))
            .or_else(|| {
                let i = start % n.max(1);
                self.servers.get(i).map(|s| (i, s))
            })
            .map(|(i, (_, peer))| (i, peer))
    }

    /// The address of server `index`, as configured.
    pub fn address(&self, index: usize) -> Option<&str> {
        self.addresses.get(index).map(String::as_str)
    }

    /// Each server's address and whether it passed its last health check.
    pub fn health(&self) -> impl Iterator<Item = (&str, bool)> {
        self.up
            .iter()
            .zip(&self.addresses)
            .map(|(up, address)| (address.as_str(), up.load(Ordering::Relaxed)))
    }

    /// Check every server's health now, and take the result for choosing servers.
    pub async fn check_health(&self) {
        self.lb.backends().run_health_check(true).await;
        for ((backend, _), up) in self.servers.iter().zip(&self.up) {
            up.store(self.lb.backends().ready(backend), Ordering::Relaxed);
        }
    }
}

/// The health check of a TLS upstream: a TCP connection and a verified TLS handshake with each
/// server, as its requests will make them.
///
/// Pingora's `TcpHealthCheck` with TLS checks every backend under one server name; here each
/// server is checked with its own prebuilt peer, so a server reached under its own host name
/// (the default `sni`) is checked under that name.
struct TlsHealthCheck {
    peers: Vec<(Backend, HttpPeer)>,
    connector: TransportConnector,
}

#[async_trait]
impl HealthCheck for TlsHealthCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let peer = self
            .peers
            .iter()
            .find(|(backend, _)| backend.addr == target.addr)
            .map(|(_, peer)| peer)
            .ok_or_else(|| {
                pingora::Error::explain(pingora::ErrorType::ConnectNoRoute, "unknown backend")
            })?;
        self.connector.get_stream(peer).await.map(|_| ())
    }

    fn health_threshold(&self, _success: bool) -> usize {
        // As `TcpHealthCheck`: one check flips the state either way.
        1
    }
}

/// Hop-by-hop fields, which Pingora's standard upstream policy removes from the forwarded
/// request (RFC 9110 section 7.6.1), and `Connection`, which can name more of them.
const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// How Pingora treats the request's hop-by-hop fields on the way upstream. A request that
/// carries none of them (nearly every keep-alive API call) has nothing for the standard pass
/// to remove, so it is forwarded as it is and the pass, ~3.5k instructions, is skipped; any
/// other request gets the standard policy.
pub fn upstream_request_policy(req: &RequestHeader) -> HttpUpstreamRequestPolicy {
    if req
        .headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name.as_str()))
    {
        HttpUpstreamRequestPolicy::standard()
    } else {
        HttpUpstreamRequestPolicy::preserve()
    }
}

pub struct Route {
    pub prefix: String,
    pub auth: AuthMode,
    pub account_types: Option<Vec<AccountType>>,
    pub limiter: Option<Arc<RateLimiter>>,
    pub upstream: Arc<Upstream>,
    pub allow_encoded_slashes: bool,
    pub org_tiers: Option<Vec<String>>,
    pub org_ids: Option<Vec<String>>,
    /// The gateway answers CORS for this route (`cors::route_preflight`, `cors::on_proxied`).
    pub cors: bool,
    /// The route's request counters and duration histogram, labelled with its prefix.
    pub series: RequestSeries,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        // Prefixes match whole path segments: "/api" covers "/api" and "/api/x", not "/apix".
        path.starts_with(&self.prefix)
            && (self.prefix.ends_with('/')
                || path.len() == self.prefix.len()
                || path.as_bytes()[self.prefix.len()] == b'/')
    }

    /// Whether a caller of this account type, in this organization, may use the route.
    pub fn allows(&self, account_type: AccountType, org: Option<&Org>) -> bool {
        let in_list = |list: &Option<Vec<String>>, value: Option<&str>| {
            list.as_ref()
                .is_none_or(|l| value.is_some_and(|v| l.iter().any(|x| x == v)))
        };
        self.account_types
            .as_ref()
            .is_none_or(|types| types.contains(&account_type))
            && in_list(&self.org_tiers, org.map(|o| o.subscription_tier.as_str()))
            && in_list(&self.org_ids, org.map(|o| o.id.as_str()))
    }
}

pub struct Router {
    /// Longest prefix first, so the first match is the most specific.
    routes: Vec<Route>,
    upstreams: Vec<Arc<Upstream>>,
}

fn same_cas(a: &Option<Arc<CaType>>, b: &Option<Arc<CaType>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| x.borrow_raw_cert() == y.borrow_raw_cert())
        }
        _ => false,
    }
}

fn upstream_timeouts(server: &ServerSettings) -> (Duration, Duration) {
    (
        server.upstream_connect_timeout,
        server.upstream_read_timeout,
    )
}

impl Router {
    /// Build the routes of `config`. Upstreams and route limiters whose settings are the same
    /// in `previous` are taken over, with their health and counts.
    pub fn build(
        config: &Config,
        limits: Option<Arc<dyn LimitStore>>,
        previous: Option<&Router>,
    ) -> std::io::Result<Router> {
        let mut by_name: HashMap<&str, Arc<Upstream>> = HashMap::new();
        let mut upstreams = Vec::new();
        let timeouts = upstream_timeouts(&config.server);
        for (i, u) in config.upstreams.iter().enumerate() {
            // Read on every build, so that a reload puts a changed CA file in force.
            let ca = match u.tls.as_ref().and_then(|t| t.ca_file.as_deref()) {
                Some(path) => Some(
                    crate::tls::load_ca(&format!("upstreams[{i}].ca_file"), path)
                        .map_err(std::io::Error::other)?,
                ),
                None => None,
            };
            let kept = previous.and_then(|p| {
                p.upstreams.iter().find(|old| {
                    old.settings == *u && old.timeouts == timeouts && same_cas(&old.ca, &ca)
                })
            });
            let up = match kept {
                Some(old) => Arc::clone(old),
                None => Arc::new(Upstream::build(u, &config.server, ca)?),
            };
            by_name.insert(u.name.as_str(), Arc::clone(&up));
            upstreams.push(up);
        }
        let old_limiter = |prefix: &str, per_minute| {
            previous?
                .routes
                .iter()
                .find(|r| r.prefix == prefix)
                .and_then(|r| r.limiter.as_ref())
                .filter(|l| l.per_minute() == per_minute)
                .cloned()
        };
        let mut routes = config
            .routes
            .iter()
            .filter_map(|r: &RouteSettings| {
                Some(Route {
                    prefix: r.prefix.clone(),
                    auth: r.auth,
                    account_types: r.account_types.clone(),
                    limiter: r.rate_limit_per_minute.map(|n| {
                        old_limiter(&r.prefix, n).unwrap_or_else(|| {
                            Arc::new(RateLimiter::new(
                                &format!("route:{}", r.prefix),
                                n,
                                limits.clone(),
                            ))
                        })
                    }),
                    upstream: Arc::clone(by_name.get(r.upstream.as_str())?),
                    allow_encoded_slashes: r.allow_encoded_slashes,
                    org_tiers: r.org_tiers.clone(),
                    org_ids: r.org_ids.clone(),
                    cors: r.cors,
                    series: RequestSeries::route(&r.prefix),
                })
            })
            .collect::<Vec<_>>();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Router { routes, upstreams })
    }

    pub fn route_index(&self, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(path))
    }

    pub fn route(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }
}

/// The most fields the gateway adds to a proxied request: the identity headers,
/// `X-Forwarded-For`, `X-Real-IP`, `X-Request-Id` and `traceparent` (`Forwarded` only ever
/// replaces the client's own).
pub const ADDED_HEADERS: usize = IDENTITY_HEADERS.len() + 4;

/// The identity header names, parsed once: inserting one neither parses nor copies its name.
static IDENTITY_NAMES: [HeaderName; 5] = [
    HeaderName::from_static(IDENTITY_HEADERS[0]),
    HeaderName::from_static(IDENTITY_HEADERS[1]),
    HeaderName::from_static(IDENTITY_HEADERS[2]),
    HeaderName::from_static(IDENTITY_HEADERS[3]),
    HeaderName::from_static(IDENTITY_HEADERS[4]),
];

/// Names whose underscore spelling is always removed, whatever `server.underscore_headers`
/// says: CGI, WSGI, PHP and Rack read `X_User_Id` as `HTTP_X_USER_ID`, the very variable the
/// gateway's `X-User-Id` becomes, and likewise for the token and the client-address headers.
const PROTECTED: [&str; 11] = [
    IDENTITY_HEADERS[0],
    IDENTITY_HEADERS[1],
    IDENTITY_HEADERS[2],
    IDENTITY_HEADERS[3],
    IDENTITY_HEADERS[4],
    "x-access-token",
    "x-forwarded-for",
    "x-real-ip",
    "x-request-id",
    ROUTING_OVERRIDES[0],
    ROUTING_OVERRIDES[1],
];

/// Headers with which IIS, Symfony, Laminas and other frameworks let a request name another
/// path than its own: the gateway would route `/public` while the backend serves the
/// `X-Original-URL: /admin` it was told. No client has a reason to send them; they never pass.
const ROUTING_OVERRIDES: [&str; 2] = ["x-original-url", "x-rewrite-url"];

const FORWARDED_FOR_NAME: &str = "x-forwarded-for";
/// Prebuilt for lookups, which would otherwise parse the name each time.
static FORWARDED_FOR_HEADER: HeaderName = HeaderName::from_static(FORWARDED_FOR_NAME);
static REAL_IP_HEADER: HeaderName = HeaderName::from_static("x-real-ip");
static FORWARDED_HEADER: HeaderName = HeaderName::from_static("forwarded");

/// Whether a client header must not reach the upstream. Header names arrive lower-cased.
fn is_spoofed(name: &HeaderName, underscores: UnderscoreHeaders) -> bool {
    let name = name.as_str();
    if memchr::memchr(b'_', name.as_bytes()).is_some() {
        return underscores == UnderscoreHeaders::Drop
            || PROTECTED.iter().any(|p| same_when_dashed(name, p));
    }
    name.starts_with("x-")
        && (IDENTITY_HEADERS.contains(&name) || ROUTING_OVERRIDES.contains(&name))
}

/// `x_user-id` against `x-user-id`: equal once every `_` is read as `-`.
fn same_when_dashed(name: &str, dashed: &str) -> bool {
    name.len() == dashed.len()
        && name
            .bytes()
            .zip(dashed.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

/// Remove every identity header the client sent, in any case or with `_` for `-` (and, by
/// default, every header with an underscore), and any path override, then add the gateway's
/// own identity headers when the request was authenticated.
pub fn set_identity_headers(
    req: &mut RequestHeader,
    identity: Option<&Verified>,
    underscores: UnderscoreHeaders,
) -> pingora::Result<()> {
    // One pass over what the client sent; nothing is collected (or allocated) unless a header
    // has to go.
    let spoofed: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|name| is_spoofed(name, underscores))
        .cloned()
        .collect();
    for name in spoofed {
        while req.remove_header(&name).is_some() {}
    }
    if let Some(identity) = identity {
        for (name, value) in IDENTITY_NAMES.iter().zip(&identity.header_values) {
            req.insert_header(name, value.clone())?;
        }
    }
    Ok(())
}

/// Who the client is, as the upstream should hear it.
///
/// - From a trusted proxy, the peer is appended to `X-Forwarded-For`, as every hop of a proxy
///   chain does, and `Forwarded` is passed on.
/// - From anyone else, the client's own `X-Forwarded-For` and `Forwarded` are not believed, so
///   they are replaced: `X-Forwarded-For` becomes the peer address, and a `Forwarded` the client
///   sent becomes `for=<peer>`.
///
/// `X-Real-IP`, when the client sent one or a trusted proxy forwarded the request, becomes the
/// client IP the gateway decided on (the one rate limits count). A direct client without one
/// gets none added: `X-Forwarded-For` already names it, and each added field costs ~1.5k
/// instructions a request (parsing its name, two maps to update).
pub fn set_forwarding_headers(
    req: &mut RequestHeader,
    peer: IpAddr,
    peer_trusted: bool,
    client: IpAddr,
) -> pingora::Result<()> {
    let peer_text = ip_text(peer);
    let forwarded_for = match req
        .headers
        .get(&FORWARDED_FOR_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) if peer_trusted && !prev.trim().is_empty() => {
            Some(format!("{prev}, {peer_text}"))
        }
        _ => None,
    };
    if !peer_trusted && req.headers.contains_key(&FORWARDED_HEADER) {
        let value = match peer {
            IpAddr::V4(_) => format!("for={peer_text}"),
            IpAddr::V6(_) => format!("for=\"[{peer_text}]\""),
        };
        while req.remove_header(&FORWARDED_HEADER).is_some() {}
        req.insert_header(&FORWARDED_HEADER, value)?;
    }
    let set_real_ip = peer_trusted || req.headers.contains_key(&REAL_IP_HEADER);
    if set_real_ip {
        while req.remove_header(&REAL_IP_HEADER).is_some() {}
        req.insert_header(&REAL_IP_HEADER, ip_text(client))?;
    }
    match forwarded_for {
        Some(chain) => req.insert_header(&FORWARDED_FOR_HEADER, chain),
        None => req.insert_header(&FORWARDED_FOR_HEADER, peer_text),
    }
}

/// An address as text. IPv4, the common case, is written digit by digit: `Ipv4Addr`'s
/// `Display` goes through the formatting machinery at ~1.3k instructions a call.
fn ip_text(ip: IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// `ip` appended to `out` as text, as `ip_text` writes it.
pub(crate) fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = std::fmt::Write::write_fmt(out, format_args!("{ip}"));
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora::upstreams::peer::Peer;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "99.100.101.255",
            "203.0.113.9",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn hop_by_hop_fields_keep_the_standard_policy() {
        let mut plain = RequestHeader::build("GET", b"/x", None).unwrap();
        plain.insert_header("Host", "a").unwrap();
        plain.insert_header("Authorization", "Bearer t").unwrap();
        assert_eq!(
            upstream_request_policy(&plain),
            HttpUpstreamRequestPolicy::preserve()
        );
        for name in HOP_BY_HOP {
            let mut req = plain.clone();
            req.insert_header(name.to_ascii_uppercase(), "x").unwrap();
            assert_eq!(
                upstream_request_policy(&req),
                HttpUpstreamRequestPolicy::standard(),
                "{name}"
            );
        }
    }

    #[test]
    fn select_takes_turns_among_servers() {
        let cfg = Config::from_toml(
            "[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"a\"\n",
            "t",
            &|_| None,
        )
        .unwrap();
        let router = Router::build(&cfg, None, None).unwrap();
        let up = &router.upstreams()[0];
        let ports: Vec<u16> = (0..4)
            .map(|_| up.select().unwrap().1.address().as_inet().unwrap().port())
            .collect();
        assert_eq!(ports, [1, 2, 1, 2]);
        assert_eq!(up.address(1), Some("127.0.0.1:2"));
        assert_eq!(up.health().count(), 2);
    }

    fn config(routes: &str) -> Config {
        let text = format!("[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n{routes}");
        Config::from_toml(&text, "t", &|_| None).unwrap()
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let cfg = config(
            "[[routes]]\nprefix = \"/\"\nupstream = \"a\"\n[[routes]]\nprefix = \"/api\"\nupstream = \"a\"\nauth = \"none\"\n[[routes]]\nprefix = \"/api/admin/\"\nupstream = \"a\"\n",
        );
        let router = Router::build(&cfg, None, None).unwrap();
        let prefix = |p: &str| {
            router
                .route(router.route_index(p).unwrap())
                .unwrap()
                .prefix
                .clone()
        };
        assert_eq!(prefix("/api/admin/x"), "/api/admin/");
        assert_eq!(prefix("/api/x"), "/api");
        assert_eq!(prefix("/api"), "/api");
        assert_eq!(prefix("/apix"), "/");
        assert_eq!(prefix("/"), "/");
    }

    #[test]
    fn no_route_for_unmatched_path() {
        let cfg = config("[[routes]]\nprefix = \"/only\"\nupstream = \"a\"\n");
        let router = Router::build(&cfg, None, None).unwrap();
        assert!(router.route_index("/other").is_none());
    }

    #[test]
    fn underscore_spellings_of_protected_headers_always_go() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X_User_Id", "evil").unwrap();
        req.append_header("x_account-type", "super").unwrap();
        req.append_header("X_ACCESS_TOKEN", "forged").unwrap();
        req.append_header("x_forwarded_for", "6.6.6.6").unwrap();
        req.append_header("x_custom", "kept").unwrap();
        req.append_header("x-access-token", "kept").unwrap();
        req.append_header("X-Original-URL", "/admin").unwrap();
        req.append_header("x_rewrite_url", "/admin").unwrap();
        set_identity_headers(&mut req, None, UnderscoreHeaders::Keep).unwrap();
        let mut names: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["x-access-token", "x_custom"]);
        set_identity_headers(&mut req, None, UnderscoreHeaders::Drop).unwrap();
        let names: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-access-token"]);
    }

    #[test]
    fn forwarding_headers_believe_only_trusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "6.6.6.6").unwrap();
        req.append_header("X-Real-IP", "6.6.6.6").unwrap();
        req.append_header("Forwarded", "for=6.6.6.6").unwrap();
        set_forwarding_headers(&mut req, peer, false, peer).unwrap();
        assert_eq!(req.headers["x-forwarded-for"], "203.0.113.9");
        assert_eq!(req.headers["x-real-ip"], "203.0.113.9");
        assert_eq!(req.headers["forwarded"], "for=203.0.113.9");
        assert_eq!(req.headers.get_all("x-real-ip").iter().count(), 1);

        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "198.51.100.7")
            .unwrap();
        req.append_header("Forwarded", "for=198.51.100.7").unwrap();
        set_forwarding_headers(&mut req, proxy, true, client).unwrap();
        assert_eq!(req.headers["x-forwarded-for"], "198.51.100.7, 10.0.0.2");
        assert_eq!(req.headers["x-real-ip"], "198.51.100.7");
        assert_eq!(req.headers["forwarded"], "for=198.51.100.7");

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        set_forwarding_headers(&mut req, peer, false, peer).unwrap();
        assert_eq!(req.headers["x-forwarded-for"], "203.0.113.9");
        assert!(
            req.headers.get("x-real-ip").is_none(),
            "none added for a direct client"
        );

        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("Forwarded", "for=x").unwrap();
        set_forwarding_headers(&mut req, v6, false, v6).unwrap();
        assert_eq!(req.headers["forwarded"], "for=\"[2001:db8::7]\"");
    }

    #[test]
    fn spoofed_identity_headers_are_removed_in_any_case() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-User-Id", "evil").unwrap();
        req.append_header("x-user-id", "evil2").unwrap();
        req.append_header("X-ACCOUNT-TYPE", "super").unwrap();
        set_identity_headers(&mut req, None, UnderscoreHeaders::Keep).unwrap();
        for h in IDENTITY_HEADERS {
            assert!(req.headers.get(h).is_none(), "{h}");
        }
        let claims = crate::token::Claims {
            user_id: "u".into(),
            email: "e@x".into(),
            customer_id: "c".into(),
            account_type: AccountType::User,
            session_id: "s".into(),
            iat: 0,
            exp: 1,
            session_start: None,
        };
        req.append_header("x-user-id", "evil").unwrap();
        let keys = crate::token::JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let verified = keys.verify(&keys.issue(&claims).unwrap(), 0).unwrap();
        set_identity_headers(&mut req, Some(&verified), UnderscoreHeaders::Keep).unwrap();
        assert_eq!(req.headers.get_all("x-user-id").iter().count(), 1);
        assert_eq!(req.headers["x-user-id"], "u");
        assert_eq!(req.headers["x-account-type"], "user");
    }
}

#[cfg(test)]
mod routing_properties {
    use super::*;
    use crate::path::{normalize, properties::path};
    use proptest::prelude::*;

    /// What a permissive backend makes of a path: everything percent-decoded, then dot
    /// segments resolved and repeated slashes merged (Python's `http.server` does this).
    fn backend_view(path: &str) -> Option<String> {
        let decoded = percent_decode(path)?;
        let mut out: Vec<&str> = Vec::new();
        for segment in decoded.split(['/', '\\']) {
            match segment {
                "" | "." => {}
                ".." => {
                    out.pop();
                }
                s => out.push(s),
            }
        }
        Some(format!("/{}", out.join("/")))
    }

    /// `;parameters` dropped from each raw segment, as a servlet container does before it
    /// decodes and resolves the path.
    fn strip_parameters(path: &str) -> String {
        path.split('/')
            .map(|s| s.split(';').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("/")
    }

    fn percent_decode(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    fn router() -> Router {
        let cfg = Config::from_toml(
            "[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"a\"\n\
             [[routes]]\nprefix = \"/public\"\nupstream = \"a\"\nauth = \"none\"\n\
             [[routes]]\nprefix = \"/api\"\nupstream = \"a\"\n\
             [[routes]]\nprefix = \"/api/admin\"\nupstream = \"a\"\naccount_types = [\"admin\"]\n",
            "t",
            &|_| None,
        )
        .unwrap();
        Router::build(&cfg, None, None).unwrap()
    }

    proptest! {
        /// Whatever the spelling, a request the gateway lets through is routed exactly as the
        /// backend will read its path: a public prefix never opens a protected one, and a
        /// protected route is never reached through a less protected one.
        #[test]
        fn no_spelling_reaches_a_protected_path_through_a_public_route(p in path()) {
            let router = router();
            let Ok(n) = normalize(&p) else { return Ok(()) };
            if n.encoded_separator {
                // Refused on every route that has not opted in; none here has.
                return Ok(());
            }
            let routed = router.route_index(&n.path);
            if let Some(java_view) = crate::path::without_parameters(&n.path) {
                if java_view.map(|p| router.route_index(&p)) != Ok(routed) {
                    // Refused as ambiguous.
                    return Ok(());
                }
            }
            let routed = routed.map(|i| &router.routes()[i].prefix);
            // A backend that resolves the raw path itself reaches what the gateway routed; and
            // the path the gateway forwards, read by a backend that keeps `;parameters` in the
            // segment or by a Java one that drops them, lies under that same route.
            for seen in [
                backend_view(&p),
                backend_view(&n.path),
                backend_view(&strip_parameters(&n.path)),
            ] {
                let Some(seen) = seen else { continue };
                let meant = router.route_index(&seen).map(|i| &router.routes()[i].prefix);
                prop_assert_eq!(routed, meant, "{} normalised to {}, the backend reads {}", p, n.path, seen);
            }
        }
    }
}
