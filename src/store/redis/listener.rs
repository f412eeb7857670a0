//! The change listener: follows the events channel so this instance's cache drops what other
//! instances changed and a raised `issuedBefore` cut-off applies at once, and notices when Redis
//! stops answering. It runs as a Pingora background service, so it starts and stops with the
//! server.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use std::sync::Arc;

use super::{RedisStore, unavailable};
use crate::revocation::Revocations;
use crate::store::StoreError;
use crate::store::cache::{Cache, Event};

/// `RedisStore::listener`: the background service that keeps the cache and the cut-off honest.
#[derive(Clone)]
pub struct Listener {
    store: RedisStore,
    urls: Vec<String>,
    cache: Arc<Cache>,
    revocations: Arc<Revocations>,
}

#[async_trait]
impl BackgroundService for Listener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            () = self.store.clone().listen(self.urls.clone(), &self.cache, &self.revocations) => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl RedisStore {
    /// The change listener for this store, the cache in front of it and the instance's
    /// cut-off, to run as a background service. Until it runs, the cache is not used.
    pub fn listener(
        &self,
        urls: Vec<String>,
        cache: Arc<Cache>,
        revocations: Arc<Revocations>,
    ) -> Listener {
        Listener {
            store: self.clone(),
            urls,
            cache,
            revocations,
        }
    }

    /// Follow the events channel until shutdown. The cache is trusted only while the
    /// subscription is up and Redis answers; otherwise it is empty and every request asks
    /// Redis (and gets 503 while Redis is down).
    ///
    /// The cut-off is read once subscribed (a raise after that read arrives as a message), and
    /// again every second in place of a PING, so that a lost message still takes effect within
    /// a second.
    async fn listen(self, urls: Vec<String>, cache: &Cache, revocations: &Revocations) {
        let channel = self.inner.keys.channel();
        loop {
            if let Some(mut pubsub) = self.subscribe(&urls, &channel).await {
                match self.read_not_before().await {
                    Ok(t) => {
                        revocations.raise(t);
                        cache.reset(true);
                        self.set_down(false);
                        tracing::info!("redis change listener subscribed");
                        self.follow(&mut pubsub, cache, revocations).await;
                        tracing::warn!("redis change listener lost its subscription");
                    }
                    Err(e) => tracing::warn!("redis cut-off not readable: {e}"),
                }
            }
            cache.reset(false);
            self.set_down(true);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Apply announcements until the subscription ends or Redis stops answering.
    async fn follow(
        &self,
        pubsub: &mut redis::aio::PubSub,
        cache: &Cache,
        revocations: &Revocations,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut messages = pubsub.on_message();
        loop {
            tokio::select! {
                msg = messages.next() => match msg {
                    Some(msg) => {
                        let payload: String = msg.get_payload().unwrap_or_default();
                        match Event::decode(&payload) {
                            Event::NotBefore(t) => {
                                revocations.raise(t);
                            }
                            event => cache.apply(event),
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => match self.read_not_before().await {
                    // Also the liveness check: an answer proves Redis answers.
                    Ok(t) => {
                        revocations.raise(t);
                    }
                    Err(e) => {
                        tracing::warn!("redis ping failed: {e}");
                        return;
                    }
                },
            }
        }
    }

    async fn subscribe(&self, urls: &[String], channel: &str) -> Option<redis::aio::PubSub> {
        // In a cluster, PUBLISH reaches every node, so any one node will do.
        for url in urls {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                continue;
            };
            let attempt = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            if let Ok(Ok(pubsub)) = tokio::time::timeout(self.inner.timeout * 2, attempt).await {
                return Some(pubsub);
            }
        }
        None
    }

    pub(super) fn set_down(&self, down: bool) {
        let was = self
            .inner
            .down
            .swap(down, std::sync::atomic::Ordering::AcqRel);
        if was != down {
            if down {
                tracing::warn!("redis is not answering; requests that need it get 503");
            } else {
                tracing::info!("redis is answering");
            }
        }
    }

    /// PING through the shared connection, even while Redis is marked down.
    pub(super) async fn ping_now(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        match tokio::time::timeout(
            self.inner.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(reply) => reply.map(drop).map_err(unavailable),
            Err(_) => Err(unavailable("timed out")),
        }
    }
}
