//! Routes and upstreams: longest-prefix matching, load-balanced peers, identity headers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::http::RequestHeader;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{LoadBalancer, health_check::TcpHealthCheck};

use crate::config::{AuthMode, Config, RouteSettings, UpstreamSettings};
use crate::model::AccountType;
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
    pub lb: LoadBalancer<RoundRobin>,
    pub health_check: Duration,
}

impl Upstream {
    fn build(settings: &UpstreamSettings) -> std::io::Result<Upstream> {
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(settings.servers.iter().map(String::as_str))?;
        lb.set_health_check(TcpHealthCheck::new());
        lb.health_check_frequency = Some(settings.health_check);
        Ok(Upstream {
            name: settings.name.clone(),
            lb,
            health_check: settings.health_check,
        })
    }
}

pub struct Route {
    pub prefix: String,
    pub auth: AuthMode,
    pub account_types: Option<Vec<AccountType>>,
    pub limiter: Option<RateLimiter>,
    pub upstream: Arc<Upstream>,
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        // Prefixes match whole path segments: "/api" covers "/api" and "/api/x", not "/apix".
        path.starts_with(&self.prefix)
            && (self.prefix.ends_with('/')
                || path.len() == self.prefix.len()
                || path.as_bytes()[self.prefix.len()] == b'/')
    }

    pub fn allows(&self, account_type: AccountType) -> bool {
        self.account_types
            .as_ref()
            .is_none_or(|types| types.contains(&account_type))
    }
}

pub struct Router {
    /// Longest prefix first, so the first match is the most specific.
    routes: Vec<Route>,
    upstreams: Vec<Arc<Upstream>>,
}

impl Router {
    pub fn build(config: &Config, limits: Option<Arc<dyn LimitStore>>) -> std::io::Result<Router> {
        let mut by_name: HashMap<&str, Arc<Upstream>> = HashMap::new();
        let mut upstreams = Vec::new();
        for u in &config.upstreams {
            let up = Arc::new(Upstream::build(u)?);
            by_name.insert(u.name.as_str(), Arc::clone(&up));
            upstreams.push(up);
        }
        let mut routes = config
            .routes
            .iter()
            .filter_map(|r: &RouteSettings| {
                Some(Route {
                    prefix: r.prefix.clone(),
                    auth: r.auth,
                    account_types: r.account_types.clone(),
                    limiter: r.rate_limit_per_minute.map(|n| {
                        RateLimiter::new(&format!("route:{}", r.prefix), n, limits.clone())
                    }),
                    upstream: Arc::clone(by_name.get(r.upstream.as_str())?),
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

/// Remove every identity header the client sent, whatever its case, then add the gateway's own
/// when the request was authenticated.
pub fn set_identity_headers(
    req: &mut RequestHeader,
    identity: Option<&Verified>,
) -> pingora::Result<()> {
    for name in IDENTITY_HEADERS {
        if req.headers.contains_key(name) {
            while req.remove_header(name).is_some() {}
        }
    }
    if let Some(identity) = identity {
        for (name, value) in IDENTITY_HEADERS.into_iter().zip(&identity.header_values) {
            req.insert_header(name, value.clone())?;
        }
    }
    Ok(())
}

/// Append the client to `X-Forwarded-For`, as every hop of a proxy chain does.
pub fn append_forwarded_for(req: &mut RequestHeader, client: IpAddr) -> pingora::Result<()> {
    let value = match req
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) if !prev.is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    req.insert_header("x-forwarded-for", value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routes: &str) -> Config {
        let text = format!("[[upstreams]]\nname = \"a\"\nservers = [\"127.0.0.1:1\"]\n{routes}");
        Config::from_toml(&text, "t", &|_| None).unwrap()
    }

    #[test]
    fn longest_prefix_wins_on_segment_boundaries() {
        let cfg = config(
            "[[routes]]\nprefix = \"/\"\nupstream = \"a\"\n[[routes]]\nprefix = \"/api\"\nupstream = \"a\"\nauth = \"none\"\n[[routes]]\nprefix = \"/api/admin/\"\nupstream = \"a\"\n",
        );
        let router = Router::build(&cfg, None).unwrap();
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
        let router = Router::build(&cfg, None).unwrap();
        assert!(router.route_index("/other").is_none());
    }

    #[test]
    fn spoofed_identity_headers_are_removed_in_any_case() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-User-Id", "evil").unwrap();
        req.append_header("x-user-id", "evil2").unwrap();
        req.append_header("X-ACCOUNT-TYPE", "super").unwrap();
        set_identity_headers(&mut req, None).unwrap();
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
        };
        req.append_header("x-user-id", "evil").unwrap();
        let keys = crate::token::JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let verified = keys.verify(&keys.issue(&claims).unwrap(), 0).unwrap();
        set_identity_headers(&mut req, Some(&verified)).unwrap();
        assert_eq!(req.headers.get_all("x-user-id").iter().count(), 1);
        assert_eq!(req.headers["x-user-id"], "u");
        assert_eq!(req.headers["x-account-type"], "user");
    }
}
