//! Redis backend: users, organizations, sessions and rate-limit counters shared by every gateway
//! instance, on a single server or a Redis Cluster.
//!
//! Split by job: `conn` (connections), `keys` (key names), `scripts` (the Lua scripts),
//! `listener` (the change listener, a background service), `seed` (import and seeding), and one file per store trait.
//!
//! Key layout (`P` is `store.redis_key_prefix`; `{…}` is a Redis Cluster hash tag, so keys that
//! one script touches share a slot):
//!
//! | key | value |
//! |---|---|
//! | `P{users}:user:<id>` | user record, JSON |
//! | `P{users}:email:<email>` | user id |
//! | `P{users}:org:<id>` | organization record, JSON |
//! | `P{users}:idp:["<issuer>","<subject>"]` | id of the user that identity-provider account is linked to |
//! | `P{users}:idpuser:["<issuer>","<user>"]` | the subject that user is linked to at that issuer |
//! | `P{u:<user>}:s:<session>` | session, JSON, expiring with the session (`EXAT`) |
//! | `P{u:<user>}:sessions` | set of the user's session ids |
//! | `Psid:{<session>}` | id of the user the session belongs to, expiring with the session |
//! | `P{u:<user>}:dev:<hash>` | a trusted device (hash of its token), expiring with it |
//! | `P{u:<user>}:devices` | set of the user's trusted device hashes |
//! | `Pmfa:{<challenge>}` | MFA challenge, JSON (code hash, attempts), expiring with it |
//! | `Psso:{<state hash>}` | a started single sign-on login, JSON, expiring with it |
//! | `Prl:<bucket>:<ip>` | rate-limit state (GCRA theoretical arrival time, ms) |
//! | `Paf:{<account>}` | sign-in attempts on an account (hash of its email), expiring with the window |
//! | `Paf:{<account>}:<ip>` | sign-in attempts on that account from one address |
//! | `Pnot_before` | the `issuedBefore` cut-off, Unix seconds; only ever raised |
//!
//! Changes are announced on the channel `Pevents`, so that every instance's cache drops what
//! changed at once (see `cache`), and applies a raised cut-off at once.
mod conn;
mod keys;
mod limits;
mod listener;
mod logins;
mod mfa;
mod revocations;
mod scripts;
mod seed;
mod sessions;
mod users;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use self::conn::{Conn, reports_cluster, runtime};
use self::keys::Keys;
use self::scripts::Scripts;
use super::{StoreError, StoreHealth};
use crate::config::RedisSettings;
use crate::metrics::{RedisFailure, metrics};
use crate::store::cache::Event;

pub use listener::Listener;

struct Inner {
    /// Set by the change listener when Redis stops answering, cleared when it answers again:
    /// meanwhile requests get 503 at once instead of each waiting out the timeout.
    down: std::sync::atomic::AtomicBool,
    conn: Conn,
    keys: Keys,
    timeout: Duration,
    scripts: Scripts,
    cluster: bool,
}

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::unavailable("redis", e)
}

impl RedisStore {
    /// Connect (lazily for a single server, so the gateway can start before Redis does). Called
    /// outside any async runtime. The cache stays unused until the store's `listener` runs.
    pub fn connect(settings: &RedisSettings) -> Result<RedisStore, StoreError> {
        runtime()?.block_on(Self::connect_async(settings))
    }

    async fn connect_async(settings: &RedisSettings) -> Result<RedisStore, StoreError> {
        let timeout = settings.timeout;
        let cluster = settings.urls.len() > 1 || reports_cluster(&settings.urls[0], timeout).await;
        let conn = if cluster {
            let client = redis::cluster::ClusterClientBuilder::new(settings.urls.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .min_retry_wait(20)
                .max_retry_wait(200)
                .build()
                .map_err(unavailable)?;
            let conn = tokio::time::timeout(timeout * 10, client.get_async_connection())
                .await
                .map_err(|_| unavailable("timed out connecting to the cluster"))?
                .map_err(unavailable)?;
            Conn::Cluster(conn)
        } else {
            let client = redis::Client::open(settings.urls[0].as_str()).map_err(unavailable)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500))
                .set_number_of_retries(2);
            Conn::Single(
                ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?,
            )
        };
        tracing::info!(cluster, urls = ?settings.urls, "redis store configured");
        Ok(RedisStore {
            inner: Arc::new(Inner {
                down: std::sync::atomic::AtomicBool::new(false),
                conn,
                keys: Keys {
                    prefix: settings.key_prefix.clone(),
                },
                timeout,
                scripts: Scripts::new(),
                cluster,
            }),
        })
    }

    /// Run start-up work on the Redis runtime, before Pingora's runtimes exist.
    pub fn block_on<T>(&self, work: impl std::future::Future<Output = T>) -> Result<T, StoreError> {
        Ok(runtime()?.block_on(work))
    }

    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// Run one Redis operation under the configured timeout, timed and counted in the metrics
    /// (`authgate_redis_duration_seconds`, `authgate_redis_errors_total`).
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let m = metrics();
        if self.inner.down.load(std::sync::atomic::Ordering::Acquire) {
            m.redis_call(Duration::ZERO, Some(RedisFailure::Unreachable));
            return Err(unavailable("not reachable"));
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.inner.timeout, op).await;
        let failure = match &outcome {
            Ok(Ok(_)) => None,
            Ok(Err(_)) => Some(RedisFailure::Error),
            Err(_) => Some(RedisFailure::Timeout),
        };
        m.redis_call(started.elapsed(), failure);
        match outcome {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable("timed out")),
        }
    }

    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    async fn publish(&self, event: Event<'_>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let channel = self.inner.keys.channel();
        self.run(conn.publish::<_, _, i64>(channel, event.encode()))
            .await
            .map(drop)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        let mut conn = self.conn();
        let raw: Option<String> = self.run(conn.get(key)).await?;
        match raw {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| unavailable(format!("unreadable record: {e}"))),
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| unavailable(format!("cannot encode record: {e}")))
}

#[async_trait]
impl StoreHealth for RedisStore {
    fn backend(&self) -> &'static str {
        if self.inner.cluster {
            "redis-cluster"
        } else {
            "redis"
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.ping_now().await
    }
}
