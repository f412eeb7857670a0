//! Downstream connections: a cap on open connections per client address, and a deadline for
//! each request's header (which also bounds how long a kept-alive connection may sit idle),
//! around Pingora's HTTP/1 service loop; on the TLS listener, the handshake too.
//!
//! Pingora reads a request header with a 60 s timeout per read, so a client that sends one byte
//! now and then holds its connection forever, and it counts no connections: a few hundred idle
//! sockets from one address exhaust the process's descriptors. This wrapper runs the same
//! keep-alive loop as Pingora's own `ServerApp` for HTTP/1, with those limits added.
//!
//! On the TLS listener the wrapper makes the handshake itself, after the connection is counted
//! and within the first header's deadline (Pingora's listener would make it before any
//! application code runs, with a fixed 60 s timeout, uncounted). A connection that negotiated
//! HTTP/2 is served by Pingora's HTTP/2 loop, still counted, with the first header's deadline
//! running until the client's connection preface is in; after that, the HTTP/2 idle timeout
//! (`server.keepalive_timeout_secs`, set on the proxy in `server`) closes a connection with no
//! request in flight.
//!
//! Deadlines are kept in whole seconds and checked once a second by one `Watchdog`, not with a
//! timer per request: a timer registration per request cost ~2.5k instructions, and Pingora's
//! own per-read keep-alive timer another ~1.5k (callgrind, on a proxied path of ~90k), while a
//! deadline store costs a few.

use std::any::Any;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use dashmap::DashMap;
use ipnet::IpNet;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::client_ip::is_trusted;

pub struct Limits {
    /// Open connections allowed from one address; 0 for no limit. Trusted proxies are exempt.
    pub max_per_ip: usize,
    /// How long a new connection's first request header may take to arrive whole.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may take, from the end of one request, until the next
    /// request's header has arrived whole.
    pub idle: Duration,
    pub trusted_proxies: Vec<IpNet>,
}

pub struct Connections<A> {
    inner: Arc<A>,
    limits: Arc<Limits>,
    /// Shared by the plain and the TLS listener: the cap counts a client's connections to both.
    open: Arc<DashMap<IpAddr, usize>>,
    watches: Arc<Watches>,
    /// The TLS listener's handshakes; `None` on the plain listener.
    tls: Option<Arc<Acceptor>>,
}

impl<A> Connections<A> {
    /// The wrapper, and the watchdog that enforces its deadlines (run it as a background
    /// service).
    pub fn new(inner: A, limits: Limits) -> (Connections<A>, Watchdog) {
        let watches = Arc::new(Watches {
            started: Instant::now(),
            next_id: AtomicU64::new(0),
            by_id: DashMap::new(),
        });
        let connections = Connections {
            inner: Arc::new(inner),
            limits: Arc::new(limits),
            open: Arc::default(),
            watches: Arc::clone(&watches),
            tls: None,
        };
        (connections, Watchdog { watches })
    }

    /// The same application, counts and deadlines, for a listener whose connections start with
    /// a TLS handshake.
    pub fn with_tls(&self, acceptor: Acceptor) -> Connections<A> {
        Connections {
            inner: Arc::clone(&self.inner),
            limits: Arc::clone(&self.limits),
            open: Arc::clone(&self.open),
            watches: Arc::clone(&self.watches),
            tls: Some(Arc::new(acceptor)),
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

/// The deadlines of every open HTTP/1 connection, and a clock in whole seconds.
struct Watches {
    started: Instant,
    next_id: AtomicU64,
    by_id: DashMap<u64, Arc<Watch>>,
}

impl Watches {
    /// Whole seconds since the wrapper was made. Read from the real clock each time (not from
    /// the watchdog), so a late watchdog can make a deadline run over but never short.
    fn now(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// A deadline for a new connection, watched until the returned guard is dropped.
    fn register(&self) -> (Arc<Watch>, Registered<'_>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch {
            due: AtomicU32::new(0),
            expired: Notify::new(),
        });
        self.by_id.insert(id, Arc::clone(&watch));
        (watch, Registered(self, id))
    }
}

/// One connection's deadline.
#[derive(Debug)]
pub struct Watch {
    /// The second (on `Watches::now`) by which the header being waited for must be in; 0 while
    /// no header is awaited.
    due: AtomicU32,
    expired: Notify,
}

impl Watch {
    /// Called by the proxy with the connection's user context once a request header is
    /// complete (Pingora calls `on_connection_reuse` right then): the deadline is lifted.
    pub fn header_seen(context: Box<dyn Any + Send + Sync>) {
        if let Ok(watch) = context.downcast::<Arc<Watch>>() {
            watch.due.store(0, Ordering::Release);
        }
    }

    fn overdue(&self, now: u32) -> bool {
        let due = self.due.load(Ordering::Acquire);
        due != 0 && due <= now
    }
}

/// Removes a connection's watch when the connection ends.
struct Registered<'a>(&'a Watches, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.by_id.remove(&self.1);
    }
}

/// Once a second: wake the connections whose header is overdue, which then close.
pub struct Watchdog {
    watches: Arc<Watches>,
}

#[async_trait]
impl BackgroundService for Watchdog {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {}
            }
            let now = self.watches.now();
            for watch in self.watches.by_id.iter() {
                if watch.overdue(now) {
                    watch.expired.notify_waiters();
                }
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
        let watches = &*self.watches;
        let accepted = watches.now();
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let _slot = match peer {
            Some(ip) if self.counts(ip) => {
                let mut open = self.open.entry(ip).or_insert(0);
                if *open >= self.limits.max_per_ip {
                    drop(open);
                    tracing::debug!(client = %ip, "too many open connections");
                    if self.tls.is_none() {
                        refuse(stream).await;
                    }
                    // Over TLS the connection is closed before the handshake: answering would
                    // cost the very handshake the cap is there to spare.
                    return None;
                }
                *open += 1;
                Some(Slot(&self.open, ip))
            }
            _ => None,
        };
        // Whole seconds, rounded up by one so that no deadline is shorter than configured. The
        // first header's deadline runs from the accept, TLS handshake included.
        let first_due = accepted
            .saturating_add(secs(self.limits.header_timeout))
            .saturating_add(1);
        let stream = match &self.tls {
            Some(acceptor) => self.handshake(acceptor, stream, first_due).await?,
            None => stream,
        };
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
            return self.serve_h2(stream, first_due, shutdown).await;
        }

        let (watch, _registered) = watches.register();
        let mut session = ServerSession::new_http1(stream);
        // No per-read timeout from Pingora (`Some(0)`: keep-alive without one): the deadline
        // below bounds the whole header, idle time included.
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(0) });
        session.set_keepalive_reuses_remaining(
            self.inner
                .server_options()
                .and_then(|o| o.keepalive_request_limit),
        );
        let next = secs(self.limits.idle).saturating_add(1);
        let mut due = first_due;
        // One registration with the watchdog's wake-ups for the connection's life, renewed only
        // after it fires: a new `Notified` on every poll of the request would lock and unlock
        // the notifier's waiter list each time the connection's task is woken.
        let expired = watch.expired.notified();
        tokio::pin!(expired);
        loop {
            watch.due.store(due.max(1), Ordering::Release);
            session.set_connection_user_context(Some(Box::new(Arc::clone(&watch))));
            let request = self.inner.process_new_http(session, shutdown);
            tokio::pin!(request);
            let result = loop {
                tokio::select! {
                    biased;
                    done = &mut request => break done,
                    () = &mut expired => {
                        // Dropping the request closes the connection. A wake-up that raced
                        // with the header's arrival changes nothing.
                        if watch.overdue(watches.now()) {
                            return None;
                        }
                        expired.set(watch.expired.notified());
                    }
                }
            };
            watch.due.store(0, Ordering::Release);
            let (stream, settings) = result?.consume();
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            due = watches.now().saturating_add(next);
        }
    }

    async fn cleanup(&self) {
        // Wakes kept-alive connections waiting for their next request, so shutdown is prompt.
        self.inner.http_cleanup().await;
    }
}

impl<A: HttpServerApp + Send + Sync + 'static> Connections<A> {
    /// The TLS handshake of a new connection on the TLS listener, by the first header's
    /// deadline (`due`, on `Watches::now`). A failed handshake is the client's affair (a
    /// scanner, an old protocol version, a name it does not trust): it is logged at debug
    /// level only.
    async fn handshake(&self, acceptor: &Acceptor, stream: Stream, due: u32) -> Option<Stream> {
        let digest = stream.get_socket_digest();
        let client = || {
            digest
                .as_ref()
                .and_then(|d| d.peer_addr())
                .map_or_else(String::new, SocketAddr::to_string)
        };
        // The listener hands over plain TCP streams.
        let tcp = match stream.into_any().downcast::<L4Stream>() {
            Ok(tcp) => *tcp,
            Err(_) => return None,
        };
        let left = due.saturating_sub(self.watches.now());
        let handshake = acceptor.tls_handshake(tcp);
        match tokio::time::timeout(Duration::from_secs(u64::from(left)), handshake).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(e)) => {
                tracing::debug!(client = %client(), "TLS handshake failed: {e}");
                None
            }
            Err(_) => {
                tracing::debug!(client = %client(), "TLS handshake timed out");
                None
            }
        }
    }

    /// An HTTP/2 connection, served by Pingora's HTTP/2 loop; closed if the client's preface
    /// has not arrived by `due`.
    async fn serve_h2(
        self: &Arc<Self>,
        stream: Stream,
        due: u32,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let watches = &*self.watches;
        let (watch, _registered) = watches.register();
        watch.due.store(due.max(1), Ordering::Release);
        let stream: Stream = Box::new(Preface {
            stream,
            watch: Some(Arc::clone(&watch)),
            read: 0,
        });
        let serve = ServerApp::process_new(&self.inner, stream, shutdown);
        tokio::pin!(serve);
        let expired = watch.expired.notified();
        tokio::pin!(expired);
        loop {
            tokio::select! {
                biased;
                done = &mut serve => return done,
                () = &mut expired => {
                    if watch.overdue(watches.now()) {
                        return None;
                    }
                    expired.set(watch.expired.notified());
                }
            }
        }
    }
}

/// The client's connection preface, which opens every HTTP/2 connection (RFC 9113 section 3.4).
const H2_PREFACE_LEN: usize = 24;

/// An HTTP/2 connection's stream that lifts the connection's deadline once the client's
/// preface has been read. Everything else passes straight through.
#[derive(Debug)]
struct Preface {
    stream: Stream,
    /// Until the preface is in.
    watch: Option<Arc<Watch>>,
    read: usize,
}

impl AsyncRead for Preface {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.watch.is_some() && matches!(polled, Poll::Ready(Ok(()))) {
            this.read += buf.filled().len() - before;
            if this.read >= H2_PREFACE_LEN {
                if let Some(watch) = this.watch.take() {
                    watch.due.store(0, Ordering::Release);
                }
            }
        }
        polled
    }
}

impl AsyncWrite for Preface {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Preface {
    async fn shutdown(&mut self) {
        self.stream.shutdown().await;
    }
}

impl UniqueID for Preface {
    fn id(&self) -> UniqueIDType {
        self.stream.id()
    }
}

impl Ssl for Preface {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.stream.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.stream.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.stream.selected_alpn_proto()
    }
}

impl GetTimingDigest for Preface {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.stream.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.stream.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.stream.get_write_pending_time()
    }
}

impl GetProxyDigest for Preface {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.stream.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.stream.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Preface {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.stream.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.stream.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Preface {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.stream.try_peek(buf).await
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
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
