//! CORS for the gateway's own endpoints and for routes that opt in (`cors = true`): preflights
//! answered by the gateway, and the grant headers on every answer to a listed origin.
//!
//! A request without `Origin` costs one header lookup on an endpoint, and nothing on a route
//! that did not opt in. An origin that is not listed gets no CORS header at all (the browser
//! then keeps the answer from the page); its requests are otherwise handled as any other.

use http::{HeaderValue, Method, StatusCode, header};
use pingora::http::{RequestHeader, ResponseHeader};
use serde_json::Value;

use crate::config::CorsSettings;
use crate::endpoints::Reply;
use crate::error::GatewayError;
use crate::live::Live;

/// What a preflight for a route may be granted: the methods an API commonly takes.
pub const ROUTE_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

/// Response headers a page may read besides the safelisted ones.
const EXPOSED: &str = "Retry-After, X-Request-Id";

/// The CORS headers an upstream may send on a route the gateway answers CORS for: replaced by the
/// gateway's own, so the route's policy is the configured one whatever the backend does.
const UPSTREAM_CORS_HEADERS: [header::HeaderName; 6] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
];

/// A listed origin, for one request: what its answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The request's `Origin`, echoed (never `*`, so credentials can be allowed).
    origin: String,
    credentials: bool,
}

impl Grant {
    /// The headers of an answer the gateway writes itself, success or error.
    pub fn add_to(&self, headers: &mut Vec<(&'static str, String)>) {
        headers.push(("access-control-allow-origin", self.origin.clone()));
        headers.push(("vary", "Origin".into()));
        if self.credentials {
            headers.push(("access-control-allow-credentials", "true".into()));
        }
        headers.push(("access-control-expose-headers", EXPOSED.into()));
    }
}

/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`: a browser asking first.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS
        && req.headers.contains_key(header::ORIGIN)
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The grant for a request from a listed origin; `None` without `Origin` or for another origin.
pub fn grant(settings: &CorsSettings, req: &RequestHeader) -> Option<Grant> {
    let origin = req.headers.get(header::ORIGIN)?.to_str().ok()?;
    let listed = settings.any_origin
        || settings
            .allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin));
    listed.then(|| Grant {
        origin: origin.to_owned(),
        credentials: settings.allow_credentials,
    })
}

/// Answer a preflight for a resource that takes `methods`: 204 with the grant for a listed
/// origin, 403 (and no CORS header) for any other. Of the request headers asked for, only the
/// allowed ones are granted; the browser refuses the request if it needs another.
pub fn preflight(
    settings: &CorsSettings,
    req: &RequestHeader,
    methods: &'static str,
) -> Result<Reply, GatewayError> {
    let grant = grant(settings, req).ok_or(GatewayError::OriginNotAllowed)?;
    let mut headers = Vec::with_capacity(6);
    headers.push(("access-control-allow-origin", grant.origin));
    headers.push(("vary", "Origin".into()));
    if grant.credentials {
        headers.push(("access-control-allow-credentials", "true".into()));
    }
    headers.push(("access-control-allow-methods", methods.into()));
    if let Some(allowed) = allowed_request_headers(settings, req) {
        headers.push(("access-control-allow-headers", allowed));
    }
    headers.push((
        "access-control-max-age",
        settings.max_age.as_secs().to_string(),
    ));
    Ok(Reply {
        status: StatusCode::NO_CONTENT,
        body: Value::Null,
        headers,
        user_id: None,
    })
}

/// A preflight on a route that opted in, answered here and never forwarded; `None` for any other
/// request (a preflight on another route is proxied like any request).
pub fn route_preflight(live: &Live, req: &RequestHeader) -> Option<Result<Reply, GatewayError>> {
    if !is_preflight(req) {
        return None;
    }
    let index = live.router.route_index(req.uri.path())?;
    let route = live.router.route(index)?;
    route
        .cors
        .then(|| preflight(&live.config.cors, req, ROUTE_METHODS))
}

/// A proxied response on a route that opted in: the upstream's CORS headers removed, `Vary:
/// Origin` added (the answer depends on it), and the grant's headers when the origin is listed.
pub fn on_proxied(resp: &mut ResponseHeader, grant: Option<&Grant>) -> pingora::Result<()> {
    for name in UPSTREAM_CORS_HEADERS {
        resp.remove_header(&name);
    }
    let varies = resp.headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|f| f.trim() == "*" || f.trim().eq_ignore_ascii_case("origin"))
        })
    });
    if !varies {
        resp.append_header(header::VARY, HeaderValue::from_static("Origin"))?;
    }
    if let Some(grant) = grant {
        resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, grant.origin.as_str())?;
        if grant.credentials {
            resp.insert_header(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true")?;
        }
        resp.insert_header(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED)?;
    }
    Ok(())
}

/// The requested headers (`Access-Control-Request-Headers`, any number of fields) that are
/// allowed, lower-cased, each once.
fn allowed_request_headers(settings: &CorsSettings, req: &RequestHeader) -> Option<String> {
    let mut granted: Vec<&str> = Vec::new();
    for value in req.headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let allowed = settings
                .allowed_headers
                .iter()
                .find(|a| a.eq_ignore_ascii_case(name));
            if let Some(allowed) = allowed {
                if !granted.contains(&allowed.as_str()) {
                    granted.push(allowed);
                }
            }
        }
    }
    (!granted.is_empty()).then(|| granted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings() -> CorsSettings {
        CorsSettings {
            allowed_origins: vec!["https://app.example.com".into()],
            any_origin: false,
            allowed_headers: vec!["content-type".into(), "x-access-token".into()],
            max_age: Duration::from_secs(600),
            allow_credentials: true,
        }
    }

    fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build(method, b"/api/auth/signin", None).unwrap();
        for (name, value) in headers {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_preflight_from_a_listed_origin_is_granted() {
        let req = request(
            "OPTIONS",
            &[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "Content-Type, X-Other"),
                (
                    "access-control-request-headers",
                    "x-access-token,content-type",
                ),
            ],
        );
        assert!(is_preflight(&req));
        let reply = preflight(&settings(), &req, "POST").unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(
            header(&reply, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(header(&reply, "access-control-allow-methods"), Some("POST"));
        assert_eq!(
            header(&reply, "access-control-allow-headers"),
            Some("content-type, x-access-token"),
            "only the allowed ones, each once"
        );
        assert_eq!(header(&reply, "access-control-max-age"), Some("600"));
        assert_eq!(
            header(&reply, "access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(header(&reply, "vary"), Some("Origin"));
    }

    #[test]
    fn other_origins_get_nothing() {
        let req = request(
            "OPTIONS",
            &[
                ("origin", "https://evil.example.com"),
                ("access-control-request-method", "POST"),
            ],
        );
        assert!(matches!(
            preflight(&settings(), &req, "POST"),
            Err(GatewayError::OriginNotAllowed)
        ));
        assert_eq!(grant(&settings(), &req), None);
        assert_eq!(grant(&settings(), &request("POST", &[])), None);
        assert!(!is_preflight(&request(
            "OPTIONS",
            &[("origin", "https://app.example.com")]
        )));
    }

    #[test]
    fn origins_compare_without_case_and_are_echoed() {
        let req = request("POST", &[("origin", "https://APP.example.com")]);
        let mut headers = Vec::new();
        grant(&settings(), &req).unwrap().add_to(&mut headers);
        assert!(headers.contains(&(
            "access-control-allow-origin",
            "https://APP.example.com".into()
        )));
        assert!(headers.contains(&("access-control-expose-headers", EXPOSED.into())));
    }

    #[test]
    fn any_origin_never_comes_with_credentials() {
        let any = CorsSettings {
            allowed_origins: Vec::new(),
            any_origin: true,
            allow_credentials: false,
            ..settings()
        };
        let req = request("POST", &[("origin", "https://anywhere.example")]);
        let mut headers = Vec::new();
        grant(&any, &req).unwrap().add_to(&mut headers);
        assert!(headers.contains(&(
            "access-control-allow-origin",
            "https://anywhere.example".into()
        )));
        assert!(
            !headers
                .iter()
                .any(|(n, _)| *n == "access-control-allow-credentials")
        );
    }

    #[test]
    fn proxied_answers_carry_the_gateways_headers_only() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("access-control-allow-origin", "*")
            .unwrap();
        resp.insert_header("access-control-allow-methods", "*")
            .unwrap();
        resp.insert_header("vary", "Accept-Encoding").unwrap();
        let grant = Grant {
            origin: "https://app.example.com".into(),
            credentials: true,
        };
        on_proxied(&mut resp, Some(&grant)).unwrap();
        assert_eq!(
            resp.headers["access-control-allow-origin"],
            "https://app.example.com"
        );
        assert_eq!(resp.headers["access-control-allow-credentials"], "true");
        assert!(resp.headers.get("access-control-allow-methods").is_none());
        let vary: Vec<_> = resp.headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["Accept-Encoding", "Origin"]);

        let mut foreign = ResponseHeader::build(200, None).unwrap();
        foreign
            .insert_header("access-control-allow-origin", "*")
            .unwrap();
        foreign.insert_header("vary", "origin").unwrap();
        on_proxied(&mut foreign, None).unwrap();
        assert!(foreign.headers.get("access-control-allow-origin").is_none());
        assert_eq!(foreign.headers.get_all("vary").iter().count(), 1);
    }
}
