//! Downstream connections: a cap on open connections per client address, and a deadline for
//! each request's header, around Pingora's HTTP/1 service loop.
//!
//! Pingora reads a request header with a 60 s timeout per read, so a client that sends one byte
//! now and then holds its connection forever, and it counts no connections: a few hundred idle
//! sockets from one address exhaust the process's descriptors. This wrapper runs the same
//! keep-alive loop as Pingora's own `ServerApp` for HTTP/1, with those two limits added. (The
//! idle time between requests is set per request, in `proxy::Gateway::early_request_filter`.)

use std::any::Any;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use ipnet::IpNet;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{ALPN, Stream};
use pingora::server::ShutdownWatch;
use tokio::sync::oneshot;

use crate::client_ip::is_trusted;

pub struct Limits {
    /// Open connections allowed from one address; 0 for no limit. Trusted proxies are exempt.
    pub max_per_ip: usize,
    /// From the first byte a request may take (or, on a kept-alive connection, from the end of
    /// the previous request, plus `idle`) until its header is complete.
    pub header_timeout: Duration,
    pub idle: Duration,
    pub trusted_proxies: Vec<IpNet>,
}

pub struct Connections<A> {
    inner: Arc<A>,
    limits: Limits,
    open: DashMap<IpAddr, usize>,
}

impl<A> Connections<A> {
    pub fn new(inner: A, limits: Limits) -> Connections<A> {
        Connections {
            inner: Arc::new(inner),
            limits,
            open: DashMap::new(),
        }
    }
}

/// A counted connection; the count goes down when it is dropped, however the connection ends.
struct Slot<'a>(&'a DashMap<IpAddr, usize>, IpAddr);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.remove_if_mut(&self.1, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// Carried into each request as the connection's user context; the proxy signals it as soon as
/// the request header has been read (`on_connection_reuse`, which Pingora calls right then).
pub struct HeaderSeen(Mutex<Option<oneshot::Sender<()>>>);

impl HeaderSeen {
    /// Called by the proxy with the context it was handed.
    pub fn signal(context: Box<dyn Any + Send + Sync>) {
        if let Ok(seen) = context.downcast::<HeaderSeen>() {
            let sender = match seen.0.lock() {
                Ok(mut g) => g.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            if let Some(sender) = sender {
                let _ = sender.send(());
            }
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for Connections<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _slot = match peer {
            Some(ip) if self.counts(ip) => {
                let mut open = self.open.entry(ip).or_insert(0);
                if *open >= self.limits.max_per_ip {
                    drop(open);
                    tracing::debug!(client = %ip, "too many open connections");
                    refuse(stream).await;
                    return None;
                }
                *open += 1;
                Some(Slot(&self.open, ip))
            }
            _ => None,
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            // HTTP/2 multiplexes requests over one connection: Pingora's own loop serves it.
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }

        let mut session = ServerSession::new_http1(stream);
        session.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            Some(self.limits.idle.as_secs().max(1))
        });
        session.set_keepalive_reuses_remaining(
            self.inner
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        let mut deadline = self.limits.header_timeout;
        loop {
            let (sender, header_seen) = oneshot::channel();
            session
                .set_connection_user_context(Some(Box::new(HeaderSeen(Mutex::new(Some(sender))))));
            let request = self.inner.process_new_http(session, shutdown);
            tokio::pin!(request);
            let result = tokio::select! {
                biased;
                done = &mut request => done,
                // Pingora's timer: set up only if the header is not there at the first poll,
                // and shared by every deadline in the same 10 ms tick.
                seen = pingora::prelude::timeout(deadline, header_seen) => match seen {
                    // The header is in: the request itself has no deadline here.
                    Ok(_) => request.await,
                    // Dropping the request closes the connection.
                    Err(_) => return None,
                },
            };
            let (stream, settings) = result?.consume();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            deadline = self.limits.idle + self.limits.header_timeout;
        }
    }

    async fn cleanup(&self) {
        // Wakes kept-alive connections waiting for their next request, so shutdown is prompt.
        self.inner.http_cleanup().await;
    }
}

impl<A> Connections<A> {
    fn counts(&self, ip: IpAddr) -> bool {
        self.limits.max_per_ip > 0 && !is_trusted(ip, &self.limits.trusted_proxies)
    }
}

/// Answer a connection over the cap: read its request (briefly), say why in JSON, close.
async fn refuse(stream: Stream) {
    const BODY: &[u8] =
        br#"{"error":"Too Many Requests","message":"Too many open connections from this address"}"#;
    let mut session = ServerSession::new_http1(stream);
    session.set_read_timeout(Some(Duration::from_secs(2)));
    let read = tokio::time::timeout(Duration::from_secs(2), session.read_request()).await;
    if matches!(read, Ok(Ok(true))) {
        let mut resp = ServerSession::generate_error(429);
        let ok = resp
            .insert_header("content-type", "application/json")
            .is_ok()
            && resp.insert_header("retry-after", "1").is_ok()
            && resp.set_content_length(BODY.len()).is_ok();
        if ok
            && session
                .write_error_response(resp, Bytes::from_static(BODY))
                .await
                .is_ok()
        {
            drain(&mut session, LINGER).await;
        }
    }
    let _ = session.finish().await;
}

/// How long a request body the gateway did not want is read and thrown away after the answer,
/// so that a client still sending it gets the answer rather than a connection reset.
pub const LINGER: Duration = Duration::from_secs(1);

/// Read and discard the rest of the request body, for at most `limit`.
pub async fn drain(session: &mut ServerSession, limit: Duration) {
    if session.get_header(http::header::EXPECT).is_some() {
        // The client waits for a 100 Continue that will not come: no body is on its way.
        return;
    }
    let deadline = tokio::time::Instant::now() + limit;
    while !session.is_body_done() {
        match tokio::time::timeout_at(deadline, session.read_request_body()).await {
            Ok(Ok(Some(_))) => {}
            _ => break,
        }
    }
}
