//! The Pingora service. A request goes, top to bottom:
//! client IP, request id and trace -> own endpoint? answer it : route -> rate limit -> token
//! -> verify -> session -> account type -> forward with identity headers and trace -> response
//! with the request id -> metrics and access log.
//!
//! Every decision is taken in `request_filter`, before an upstream connection is opened.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::{StatusCode, header};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};

use crate::access_log::{self, Entry};
use crate::app::App;
use crate::auth::{Caller, authenticate, unix_now};
use crate::client_ip::{client_ip, is_trusted};
use crate::config::AuthMode;
use crate::connections::{LINGER, Watch, drain};
use crate::cors::{self, Grant};
use crate::endpoints::{self, Endpoint, Reply};
use crate::error::GatewayError;
use crate::live::Live;
use crate::metrics::{RequestSeries, metrics, record_auth};
use crate::path::{PathError, normalize_request, without_parameters};
use crate::telemetry::redact_uri;
use crate::token::jwt::Verified;
use crate::token::{body_token, header_or_query_token};
use crate::trace::Trace;
use crate::upstream::{
    self, Route, set_forwarding_headers, set_identity_headers, upstream_request_policy,
};

/// Longest request target (path and query) accepted, as nginx's default header buffers allow.
const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Most header fields accepted in one request.
const MAX_HEADER_FIELDS: usize = 100;

/// The Pingora service: one instance serves every request, with the application state.
pub struct Gateway {
    app: App,
}

impl Gateway {
    pub fn new(app: App) -> Gateway {
        Gateway { app }
    }
}

/// Per-request state carried between Pingora's phases.
pub struct RequestCtx {
    started: Instant,
    /// The configuration this request started with; a reload mid-request does not affect it.
    live: Option<Arc<Live>>,
    /// The socket peer, and the client it speaks for (the same unless a trusted proxy).
    peer: IpAddr,
    /// The peer is one of `server.trusted_proxies`.
    peer_trusted: bool,
    client_ip: IpAddr,
    /// The gateway endpoint that answered the request, if one did.
    endpoint: Option<Endpoint>,
    route: Option<usize>,
    identity: Option<Arc<Verified>>,
    /// Status of a response the gateway wrote itself.
    answered: Option<u16>,
    /// A listed origin's CORS grant, for an endpoint or a route with `cors = true`.
    cors: Option<Grant>,
    /// Boxed: Pingora moves the context with the request's future a few times, copying every
    /// byte of it each time.
    rec: Box<Recorded>,
}

/// What is recorded of a request beside the decisions on it: for its id, trace, metrics and log.
#[derive(Default)]
struct Recorded {
    /// Request id and trace context, decided as the request arrives.
    trace: Option<Trace>,
    /// The server of the route's upstream the request went to (its index there).
    server: Option<usize>,
    /// When the request was sent upstream, until its response header arrives.
    upstream_sent: Option<Instant>,
    /// The user a gateway endpoint acted for or signed in, for the access log.
    endpoint_user: Option<String>,
}

impl RequestCtx {
    /// The route the request was admitted to.
    fn route(&self) -> Option<&Route> {
        self.live.as_ref()?.router.route(self.route?)
    }

    /// What this request is counted under: its endpoint, its route, or no route.
    fn series(&self) -> &RequestSeries {
        match (self.endpoint, self.route()) {
            (Some(endpoint), _) => metrics().endpoint(endpoint),
            (None, Some(route)) => &route.series,
            (None, None) => metrics().no_route(),
        }
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            live: None,
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            endpoint: None,
            route: None,
            identity: None,
            answered: None,
            cors: None,
            rec: Box::default(),
        }
    }

    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {
        // No response compression here (backends compress, or a CDN does): skipping Pingora's
        // default module saves its per-request setup.
    }

    fn on_connection_reuse(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
        previous: Box<dyn std::any::Any + Send + Sync>,
    ) {
        // The header of this request is complete: lift the header deadline.
        Watch::header_seen(previous);
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let live = self.app.live.load_full();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let trusted = &live.config.server.trusted_proxies;
        ctx.peer = peer;
        ctx.peer_trusted = !trusted.is_empty() && is_trusted(peer, trusted);
        ctx.client_ip = client_ip(peer, session.req_header(), trusted);
        ctx.rec.trace = Some(Trace::of(session.req_header(), ctx.peer_trusted));

        let outcome = self.decide(session, ctx, &live).await;
        ctx.live = Some(live);

        match outcome {
            Ok(None) => {
                // Header names go upstream in canonical form (standard names title-cased,
                // others lower-case), as HAProxy and Envoy send them: names are
                // case-insensitive, and not keeping the client's spelling spares a second
                // header map in every copy and change of the request.
                session.req_header_mut().drop_header_case();
                Ok(false)
            }
            Ok(Some(reply)) => {
                let body = serde_json::to_vec(&reply.body).unwrap_or_default();
                ctx.answered = Some(reply.status.as_u16());
                if reply.user_id.is_some() {
                    ctx.rec.endpoint_user = reply.user_id;
                }
                let trace = ctx.rec.trace.as_ref();
                respond(
                    session,
                    trace,
                    reply.status,
                    Bytes::from(body),
                    &reply.headers,
                )
                .await?;
                Ok(true)
            }
            Err(e) => {
                let status = e.status();
                if status.is_server_error() {
                    // The client gets a fixed text; the log gets the cause, with its sources.
                    tracing::warn!(
                        status = status.as_u16(),
                        "request refused: {}",
                        error_chain(&e)
                    );
                }
                ctx.answered = Some(status.as_u16());
                respond_error(session, ctx.rec.trace.as_ref(), &e, ctx.cors.as_ref()).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(route) = ctx.route() else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no route chosen",
            ));
        };
        let (server, peer) = route.upstream.select().ok_or_else(|| {
            Error::explain(ErrorType::HTTPStatus(502), "no healthy upstream server")
        })?;
        let mut peer = Box::new(peer.clone());
        ctx.rec.server = Some(server);
        peer.options.http_upstream_request_policy = upstream_request_policy(session.req_header());
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(live) = ctx.live.as_ref() else {
            return Err(Error::explain(
                ErrorType::HTTPStatus(502),
                "no configuration",
            ));
        };
        // The request has exactly as much room as the client sent fields: make room once for
        // the ones the gateway adds, rather than growing both of Pingora's maps on the way.
        upstream_request.try_reserve_headers(upstream::ADDED_HEADERS)?;
        set_identity_headers(
            upstream_request,
            ctx.identity.as_deref(),
            live.config.server.underscore_headers,
        )?;
        set_forwarding_headers(upstream_request, ctx.peer, ctx.peer_trusted, ctx.client_ip)?;
        if let Some(trace) = ctx.rec.trace.as_ref() {
            trace.forward(upstream_request)?;
        }
        // Let the other requests that are ready in this pass of the event loop get this far too,
        // so that the pass's requests go to the upstream back to back (see `batch_writes`).
        batch_writes().await;
        ctx.rec.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // `100 Continue` and the like come before the response proper.
        let status = upstream_response.status;
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(());
        }
        // And the pass's answers go to their clients back to back.
        batch_writes().await;
        // Header names go to the client in canonical form too (see `request_filter`).
        upstream_response.drop_header_case();
        if let (Some(sent), Some(route)) = (ctx.rec.upstream_sent.take(), ctx.route()) {
            route.upstream.latency.observe(sent.elapsed());
        }
        // A route that opted in answers CORS as configured, whatever the upstream sent.
        if ctx.route().is_some_and(|r| r.cors) {
            cors::on_proxied(upstream_response, ctx.cors.as_ref())?;
        }
        let tell = ctx
            .live
            .as_ref()
            .is_some_and(|l| l.config.server.request_id_in_response);
        match ctx.rec.trace.as_ref() {
            Some(trace) if tell => trace.answer(upstream_response),
            _ => Ok(()),
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let error = match (e.etype(), e.esource()) {
            (_, ErrorSource::Downstream) => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => None,
                _ => Some(GatewayError::BadRequest(
                    "The request could not be read".into(),
                )),
            },
            (ErrorType::ConnectTimedout | ErrorType::ReadTimedout, _) => {
                Some(GatewayError::GatewayTimeout)
            }
            _ => Some(GatewayError::BadGateway),
        };
        let code = match error {
            Some(error) => {
                if let Err(write_err) =
                    respond_error(session, ctx.rec.trace.as_ref(), &error, ctx.cors.as_ref()).await
                {
                    tracing::debug!("could not send error response: {write_err}");
                }
                error.status().as_u16()
            }
            None => 0,
        };
        ctx.answered = Some(code);
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .or(ctx.answered)
            .unwrap_or(0);
        let latency = ctx.started.elapsed();
        ctx.series().record(status, latency);

        let Some(live) = ctx.live.as_ref().filter(|l| l.config.server.access_log) else {
            return;
        };
        let req = session.req_header();
        let route = ctx.route();
        let trace = ctx.rec.trace.as_ref();
        access_log::write(
            live.config.server.access_log_format,
            &Entry {
                request_id: trace.map(Trace::request_id).unwrap_or("-"),
                trace_id: trace.map(Trace::trace_id).unwrap_or("-"),
                client_ip: ctx.client_ip,
                method: req.method.as_str(),
                path: &redact_uri(&req.uri),
                route: ctx
                    .endpoint
                    .map(Endpoint::name)
                    .or(route.map(|r| r.prefix.as_str())),
                user_id: ctx
                    .identity
                    .as_ref()
                    .map(|c| c.claims.user_id.as_str())
                    .or(ctx.rec.endpoint_user.as_deref()),
                status,
                latency,
                upstream: route
                    .zip(ctx.rec.server)
                    .and_then(|(r, i)| r.upstream.address(i)),
                error: e.map(|e| e.etype().as_str()),
            },
        );
    }

    fn request_summary(&self, session: &Session, _ctx: &RequestCtx) -> String {
        // Pingora's own error logs use this; the default would print `?token=` in clear.
        let req = session.req_header();
        format!("{} {}", req.method, redact_uri(&req.uri))
    }
}

impl Gateway {
    /// Normalise the path, then either answer one of the gateway's own endpoints (`Some`) or
    /// admit the request to its route (`None`).
    async fn decide(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        live: &Live,
    ) -> Result<Option<Reply>, GatewayError> {
        // Pingora refuses targets over 64 KiB and more than 256 fields with a bare 400; below
        // its limits, the gateway's own are answered in JSON.
        let req = session.req_header();
        if req.raw_path().len() > MAX_TARGET_BYTES {
            return Err(GatewayError::UriTooLong {
                limit: MAX_TARGET_BYTES,
            });
        }
        if req.headers.len() > MAX_HEADER_FIELDS {
            return Err(GatewayError::TooManyHeaders {
                limit: MAX_HEADER_FIELDS,
            });
        }
        // Everything below, endpoints and routes alike, sees only the normalised path, and it
        // is also what the upstream receives.
        let encoded_separator = normalize_request(session.req_header_mut())?;
        match Endpoint::classify(session.req_header().uri.path()) {
            Some(endpoint) => {
                ctx.endpoint = Some(endpoint);
                let req = session.req_header();
                if cors::is_preflight(req) {
                    // Before the method check: a preflight needs no token and is no credential
                    // request.
                    return cors::preflight(&live.config.cors, req, endpoint.method()).map(Some);
                }
                ctx.cors = cors::grant(&live.config.cors, req);
                let mut reply = self.answer(session, ctx, live, endpoint).await?;
                if let Some(grant) = &ctx.cors {
                    grant.add_to(&mut reply.headers);
                }
                Ok(Some(reply))
            }
            None => match cors::route_preflight(live, session.req_header()) {
                Some(preflight) => preflight.map(Some),
                None => self
                    .admit(session, ctx, live, encoded_separator)
                    .await
                    .map(|()| None),
            },
        }
    }

    /// An endpoint the gateway answers itself.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        live: &Live,
        endpoint: Endpoint,
    ) -> Result<Reply, GatewayError> {
        let client = ctx.client_ip;
        if session.req_header().method.as_str() != endpoint.method() {
            return Err(GatewayError::MethodNotAllowed);
        }
        if endpoint.is_credential() {
            live.auth_limiter.check(client).await?;
        }
        let body = read_body(session, live.config.server.max_body_bytes).await?;
        let now = unix_now();
        let caller = if endpoint.needs_caller() {
            let token = match header_or_query_token(session.req_header()) {
                Some((_, token)) => Some(token.into_owned()),
                None => body_token(&body),
            };
            let caller = match token {
                Some(token) => authenticate(&self.app, live, &token, now).await,
                None => Err(GatewayError::MissingToken),
            };
            record_auth(caller.as_ref().map(drop));
            let caller = caller?;
            ctx.rec.endpoint_user = Some(caller.user.id.clone());
            Some(caller)
        } else {
            None
        };
        let cookies = session
            .req_header()
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ");
        let device_cookie =
            crate::mfa::cookie(&cookies, &live.config.mfa.device_cookie).map(str::to_owned);
        let req = endpoints::Request {
            path: session.req_header().uri.path(),
            cookies,
            body: &body,
            caller,
            client_ip: client,
            now,
            device_cookie,
        };
        endpoints::handle(endpoint, &self.app, live, req).await
    }

    /// A request for an upstream: decide whether it may pass, and as whom.
    async fn admit(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        live: &Live,
        encoded_separator: bool,
    ) -> Result<(), GatewayError> {
        let path = session.req_header().uri.path();
        let index = live
            .router
            .route_index(path)
            .ok_or(GatewayError::NotFound)?;
        if let Some(java_view) = without_parameters(path) {
            // Java servers drop `;parameters` from each segment: whichever way the backend
            // reads the path, it must belong to the same route.
            let same = java_view.is_ok_and(|p| live.router.route_index(&p) == Some(index));
            if !same {
                return Err(PathError::AmbiguousParameters.into());
            }
        }
        let route = live.router.route(index).ok_or(GatewayError::NotFound)?;
        if encoded_separator && !route.allow_encoded_slashes {
            return Err(PathError::EncodedSeparator.into());
        }
        ctx.route = Some(index);
        if route.cors {
            ctx.cors = cors::grant(&live.config.cors, session.req_header());
        }
        if let Some(limiter) = &route.limiter {
            limiter.check(ctx.client_ip).await?;
        }
        if route.auth == AuthMode::None {
            return Ok(());
        }
        let identity = self.authorize(session, live, route).await;
        match &identity {
            // Anonymous, where the route allows it: no verdict to count.
            Ok(None) => {}
            Ok(Some(_)) => record_auth(Ok(())),
            Err(e) => record_auth(Err(e)),
        }
        ctx.identity = identity?;
        Ok(())
    }

    /// The caller of a route that looks at tokens: `None` for an anonymous request where the
    /// route allows one.
    async fn authorize(
        &self,
        session: &mut Session,
        live: &Live,
        route: &Route,
    ) -> Result<Option<Arc<Verified>>, GatewayError> {
        let now = unix_now();
        let caller = if let Some((_, token)) = header_or_query_token(session.req_header()) {
            Some(authenticate(&self.app, live, &token, now).await?)
        } else if let Some(token) = read_body_token(session, live, route.auth).await? {
            Some(authenticate(&self.app, live, &token, now).await?)
        } else {
            None
        };
        let Some(Caller { token, org, .. }) = caller else {
            return match route.auth {
                AuthMode::Required => Err(GatewayError::MissingToken),
                _ => Ok(None),
            };
        };
        if !route.allows(token.claims.account_type, org.as_deref()) {
            return Err(GatewayError::Forbidden);
        }
        Ok(Some(token))
    }
}

/// The body's `token` field, for a JSON body of at most `server.max_body_bytes`, sized by
/// `Content-Length` or chunked. The body is kept in Pingora's retry buffer, from which the
/// proxy later sends it upstream byte for byte.
///
/// A larger JSON body cannot be searched. Where a token is required, the request then has none
/// (401). Where it is optional, the body is refused (413) rather than forwarded unsearched: a
/// backend that reads tokens from bodies would take one the gateway never checked.
async fn read_body_token(
    session: &mut Session,
    live: &Live,
    auth: AuthMode,
) -> Result<Option<String>, GatewayError> {
    let req = session.req_header();
    let is_json = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_media_type);
    if !is_json {
        return Ok(None);
    }
    let limit = live.config.server.max_body_bytes;
    match content_length(req) {
        Some(0) => return Ok(None),
        Some(n) if n <= limit => {}
        Some(_) if auth == AuthMode::Optional => {
            return Err(GatewayError::PayloadTooLarge { limit });
        }
        Some(_) => return Ok(None),
        // Chunked, or HTTP/2 (whose body needs no length): read up to the limit (413 past it).
        None if req.headers.contains_key(header::TRANSFER_ENCODING)
            || req.version == http::Version::HTTP_2 => {}
        None => return Ok(None),
    }
    session.as_downstream_mut().enable_retry_buffering();
    let body = read_body(session, limit).await?;
    Ok(body_token(&body))
}

fn is_json_media_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
        || media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case("+json")
}

fn content_length(req: &RequestHeader) -> Option<usize> {
    req.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Read the whole request body, refusing more than `limit` bytes.
async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    if content_length(session.req_header()).is_some_and(|n| n > limit) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::new();
    loop {
        match session.downstream_session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(GatewayError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                tracing::debug!("request body read failed: {e}");
                // Where a body's framing broke, the next request's would start is unknown: the
                // connection is not reused (RFC 9112 section 9.6).
                session.set_keepalive(None);
                return Err(GatewayError::BadRequest(
                    "The request body could not be read".into(),
                ));
            }
        }
    }
}

/// An error and every error it was caused by, for the log.
fn error_chain(e: &GatewayError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Transparent wrappers and "context: source" displays repeat their source.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn respond_error(
    session: &mut Session,
    trace: Option<&Trace>,
    e: &GatewayError,
    cors: Option<&Grant>,
) -> Result<()> {
    let mut headers = Vec::new();
    if let Some(secs) = e.retry_after() {
        headers.push(("retry-after", secs.to_string()));
    }
    if let Some(grant) = cors {
        grant.add_to(&mut headers);
    }
    respond(session, trace, e.status(), e.body(), &headers).await
}

/// Write a response of the gateway's own, with the request's id.
async fn respond(
    session: &mut Session,
    trace: Option<&Trace>,
    status: StatusCode,
    body: Bytes,
    headers: &[(&'static str, String)],
) -> Result<()> {
    // A 204 (a CORS preflight) has no body, whatever the reply held.
    let bodiless = status == StatusCode::NO_CONTENT;
    let mut resp = ResponseHeader::build(status, Some(5 + headers.len()))?;
    if !bodiless {
        resp.insert_header(header::CONTENT_TYPE, "application/json")?;
        resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    }
    // Responses carry tokens and per-user data: never cache them.
    resp.insert_header(header::CACHE_CONTROL, "no-store")?;
    for (name, value) in headers {
        resp.insert_header(*name, value.as_str())?;
    }
    if let Some(trace) = trace {
        trace.answer(&mut resp)?;
    }
    let downstream = session.as_downstream_mut();
    let unread = !(downstream.is_body_empty() || downstream.is_body_done());
    if unread {
        // The connection cannot be reused with a body half read.
        session.set_keepalive(None);
    }
    session
        .write_response_header(Box::new(resp), bodiless)
        .await?;
    if !bodiless {
        session.write_response_body(Some(body), true).await?;
    }
    if unread {
        // A client that sends its whole body before reading would otherwise meet a reset when
        // the connection closes with its data unread, and lose this answer.
        drain(session.as_downstream_mut(), LINGER).await;
    }
    Ok(())
}

/// Step aside until the other requests that are ready in this pass of the worker's event loop
/// have run as far as this one, before writing to a peer.
///
/// Without it, each request reads, is checked and is written on before the next one is read,
/// so a pass's writes are spread over the whole pass, and a peer that finished its previous
/// batch (a client's load generator, an upstream) goes to sleep and is woken again for nearly
/// every message. Each such wake-up is paid by the gateway, in system time, on the sending side
/// of the loopback or network stack. Yielding here moves this request to the end of the pass
/// (Tokio runs yielded tasks after it has polled for new events), so the writes of a pass go out
/// together, as HAProxy's do. Its cost is one more poll of the request's task per write. Under
/// load it removed 2.4 to 3.2 µs of system time per request, for at most 1 µs of user time, and
/// cut the client's and the upstream's wake-ups from 0.24 and 0.27 to 0.10 per request
/// (`benches/load/wakeups.sh`, BENCHMARKS.md). With nothing else ready, the task runs again at
/// once, after a poll for events that finds none.
async fn batch_writes() {
    tokio::task::yield_now().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("Application/JSON; charset=utf-8"));
        assert!(is_json_media_type("application/merge-patch+json"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("json"));
    }
}
