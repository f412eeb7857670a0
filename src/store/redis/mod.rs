//! Redis backend: users, organizations, sessions and rate-limit counters shared by every gateway
//! instance, on a single server or a Redis Cluster.
//!
//! Key layout (`P` is `store.redis_key_prefix`; `{…}` is a Redis Cluster hash tag, so keys that
//! one script touches share a slot):
//!
//! | key | value |
//! |---|---|
//! | `P{users}:user:<id>` | user record, JSON |
//! | `P{users}:email:<email>` | user id |
//! | `P{users}:org:<id>` | organization record, JSON |
//! | `P{u:<user>}:s:<session>` | session, JSON, expiring with the session (`EXAT`) |
//! | `P{u:<user>}:sessions` | set of the user's session ids |
//! | `P{u:<user>}:dev:<hash>` | a trusted device (hash of its token), expiring with it |
//! | `P{u:<user>}:devices` | set of the user's trusted device hashes |
//! | `Pmfa:{<challenge>}` | MFA challenge, JSON (code hash, attempts), expiring with it |
//! | `Prl:<bucket>:<ip>` | rate-limit state (GCRA theoretical arrival time, ms) |
//! | `Paf:{<account>}` | failed sign-ins on an account (hash of its email), expiring with the window |
//! | `Paf:{<account>}:<ip>` | failed sign-ins on that account from one address |
//!
//! Changes are announced on the channel `Pevents`, so that every instance's cache drops what
//! changed at once (see `cache`).

mod cache;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncCommands, Cmd, Pipeline, RedisFuture, Script, Value};

use self::cache::{Cache, Event};
use super::users_file::UsersFile;
use super::{
    Attempt, ChallengeStore, DeviceStore, LimitStore, SessionStore, StoreError, StoreHealth,
    UserStore,
};
use crate::config::RedisSettings;
use crate::model::{Challenge, Org, Session, User};

/// A multiplexed connection to one server (reconnecting by itself) or to a cluster.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

struct Keys {
    prefix: String,
}

impl Keys {
    fn user(&self, id: &str) -> String {
        format!("{}{{users}}:user:{id}", self.prefix)
    }
    fn email(&self, email: &str) -> String {
        format!("{}{{users}}:email:{email}", self.prefix)
    }
    fn org(&self, id: &str) -> String {
        format!("{}{{users}}:org:{id}", self.prefix)
    }
    fn session_prefix(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:s:", self.prefix)
    }
    fn session(&self, user: &str, id: &str) -> String {
        format!("{}{id}", self.session_prefix(user))
    }
    fn user_sessions(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:sessions", self.prefix)
    }
    fn device_prefix(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:dev:", self.prefix)
    }
    fn devices(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:devices", self.prefix)
    }
    fn challenge(&self, id: &str) -> String {
        format!("{}mfa:{{{id}}}", self.prefix)
    }
    fn limit(&self, key: &str) -> String {
        format!("{}rl:{key}", self.prefix)
    }
    fn failures(&self, account: &str, client: IpAddr) -> [String; 2] {
        let account_key = format!("{}af:{{{account}}}", self.prefix);
        [format!("{account_key}:{client}"), account_key]
    }
    fn secret(&self) -> String {
        format!("{}secret", self.prefix)
    }
    fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
}

/// Store a session (or trusted device) and index it under its user; the index lives as long as
/// its longest-lived member.
const CREATE_SESSION: &str = include_str!("scripts/create_session.lua");

/// Move a live session's expiry (record and key TTL together); 0 when it is gone.
const EXTEND_SESSION: &str = include_str!("scripts/extend_session.lua");

/// Claim the email, then write the user and the organization; 0 when the email is taken.
const CREATE_USER: &str = include_str!("scripts/create_user.lua");

const REVOKE_SESSION: &str = include_str!("scripts/revoke_session.lua");

/// Delete every member of a user's index (sessions or devices) but ARGV[2]. Every key of the
/// user shares the user's hash tag, so this stays in one slot.
const REVOKE_USER: &str = include_str!("scripts/revoke_user.lua");

/// GCRA, the algorithm `governor` runs in process: a burst of `burst`, one slot back every
/// `emission` ms. Redis's own clock is used so that instances with skewed clocks agree.
/// Returns 0 when allowed, else the milliseconds to wait.
const RATE_LIMIT: &str = include_str!("scripts/rate_limit.lua");

/// One guess at an MFA code: compare, and count a wrong one, atomically; the right code
/// deletes the challenge. Returns {0} unknown, {2} exhausted, {3, remaining} wrong, {1, record}.
const ATTEMPT: &str = include_str!("scripts/attempt.lua");

/// Count one attempt under the account key and the account-and-address key, unless either is
/// at its limit: then return the milliseconds left in its window, counting nothing. A key's
/// window starts with its first attempt.
const RESERVE_ATTEMPT: &str = include_str!("scripts/reserve_attempt.lua");

struct Scripts {
    attempt: Script,
    create_user: Script,
    create_session: Script,
    extend_session: Script,
    revoke_session: Script,
    revoke_user: Script,
    rate_limit: Script,
    reserve_attempt: Script,
}

struct Inner {
    /// Set by the change listener when Redis stops answering, cleared when it answers again:
    /// meanwhile requests get 503 at once instead of each waiting out the timeout.
    down: std::sync::atomic::AtomicBool,
    conn: Conn,
    keys: Keys,
    timeout: Duration,
    cache: Cache,
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

/// The process-wide runtime that drives Redis connections and the change listener, apart from
/// Pingora's request runtimes.
fn runtime() -> Result<&'static tokio::runtime::Runtime, StoreError> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("authgate-redis")
        .enable_all()
        .build()
        .map_err(unavailable)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

impl RedisStore {
    /// Connect (lazily for a single server, so the gateway can start before Redis does) and
    /// start listening for changes. Called outside any async runtime.
    pub fn connect(settings: &RedisSettings) -> Result<RedisStore, StoreError> {
        let rt = runtime()?;
        let store = rt.block_on(Self::connect_async(settings))?;
        let listener = store.clone();
        let urls = settings.urls.clone();
        rt.spawn(async move { listener.listen(urls).await });
        Ok(store)
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
                cache: Cache::new(settings.session_cache),
                scripts: Scripts {
                    attempt: Script::new(ATTEMPT),
                    create_user: Script::new(CREATE_USER),
                    create_session: Script::new(CREATE_SESSION),
                    extend_session: Script::new(EXTEND_SESSION),
                    revoke_session: Script::new(REVOKE_SESSION),
                    revoke_user: Script::new(REVOKE_USER),
                    rate_limit: Script::new(RATE_LIMIT),
                    reserve_attempt: Script::new(RESERVE_ATTEMPT),
                },
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

    /// Run one Redis operation under the configured timeout.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.inner.down.load(std::sync::atomic::Ordering::Acquire) {
            return Err(unavailable("not reachable"));
        }
        match tokio::time::timeout(self.inner.timeout, op).await {
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

    /// Follow the events channel for as long as the process lives. The cache is trusted only
    /// while the subscription is up and Redis answers pings; otherwise it is empty and every
    /// request asks Redis (and gets 503 while Redis is down).
    async fn listen(self, urls: Vec<String>) {
        let channel = self.inner.keys.channel();
        loop {
            if let Some(mut pubsub) = self.subscribe(&urls, &channel).await {
                self.inner.cache.reset(true);
                self.set_down(false);
                tracing::info!("redis change listener subscribed");
                let mut ping = tokio::time::interval(Duration::from_secs(1));
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(msg) => {
                                let payload: String = msg.get_payload().unwrap_or_default();
                                self.inner.cache.apply(Event::decode(&payload));
                            }
                            None => break,
                        },
                        _ = ping.tick() => {
                            if let Err(e) = self.ping_now().await {
                                tracing::warn!("redis ping failed: {e}");
                                break;
                            }
                        }
                    }
                }
                tracing::warn!("redis change listener lost its subscription");
            }
            self.inner.cache.reset(false);
            self.set_down(true);
            tokio::time::sleep(Duration::from_millis(250)).await;
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

    fn set_down(&self, down: bool) {
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
    async fn ping_now(&self) -> Result<(), StoreError> {
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

    /// Load a users file into Redis (`authgate users import`): organizations, users and the
    /// email index, replacing records with the same id. Returns (users, organizations).
    pub async fn import(&self, file: &UsersFile) -> Result<(usize, usize), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        for org in &file.orgs {
            pipe.set(keys.org(&org.id), to_json(org)?).ignore();
        }
        for user in &file.users {
            // A user whose email changed must not keep the old address.
            if let Some(old) = self.get_json::<User>(keys.user(&user.id)).await? {
                if old.email != user.email {
                    pipe.del(keys.email(&old.email)).ignore();
                }
            }
            pipe.set(keys.user(&user.id), to_json(user)?).ignore();
            pipe.set(keys.email(&user.email), &user.id).ignore();
        }
        // Every key above carries the {users} tag, so the transaction stays in one slot.
        pipe.atomic();
        tokio::time::timeout(self.inner.timeout * 20, pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|_| unavailable("timed out importing"))?
            .map_err(unavailable)?;
        self.publish(Event::Everything).await?;
        Ok((file.users.len(), file.orgs.len()))
    }
}

impl RedisStore {
    /// The token secret every instance uses when none is configured: the first instance's
    /// `candidate` wins and the others adopt it.
    pub async fn shared_secret(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn();
        let key = self.inner.keys.secret();
        let _: bool = self.run(conn.set_nx(&key, hex::encode(candidate))).await?;
        let stored: String = self.run(conn.get(&key)).await?;
        hex::decode(stored).map_err(|e| unavailable(format!("unreadable shared secret: {e}")))
    }

    /// Add the users and organizations of `file` that Redis does not have yet, leaving existing
    /// records (changed through the gateway since) alone. Returns how many users were added.
    pub async fn seed(&self, file: &UsersFile) -> Result<usize, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        for org in &file.orgs {
            pipe.set_nx(keys.org(&org.id), to_json(org)?).ignore();
        }
        for user in &file.users {
            pipe.set_nx(keys.email(&user.email), &user.id);
            pipe.set_nx(keys.user(&user.id), to_json(user)?).ignore();
        }
        pipe.atomic();
        let added: Vec<bool> =
            tokio::time::timeout(self.inner.timeout * 20, pipe.query_async(&mut conn))
                .await
                .map_err(|_| unavailable("timed out seeding users"))?
                .map_err(unavailable)?;
        Ok(added.into_iter().filter(|a| *a).count())
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| unavailable(format!("cannot encode record: {e}")))
}

/// Whether the server at `url` runs in cluster mode. Unreachable servers count as single, so
/// the gateway can start before Redis and connect when it appears.
async fn reports_cluster(url: &str, timeout: Duration) -> bool {
    let probe = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn)
            .await?;
        Ok::<_, redis::RedisError>(info.contains("cluster_enabled:1"))
    };
    match tokio::time::timeout(timeout * 4, probe).await {
        Ok(Ok(cluster)) => cluster,
        Ok(Err(e)) => {
            tracing::warn!("redis at {url} not reachable at start ({e}); will keep trying");
            false
        }
        Err(_) => {
            tracing::warn!("redis at {url} did not answer at start; will keep trying");
            false
        }
    }
}

#[async_trait]
impl UserStore for RedisStore {
    async fn user_by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        let mut conn = self.conn();
        let id: Option<String> = self.run(conn.get(self.inner.keys.email(email))).await?;
        match id {
            Some(id) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError> {
        let cache = &self.inner.cache;
        if let Some(user) = cache.user(id) {
            return Ok(Some(user));
        }
        let generation = cache.generation();
        let user = self
            .get_json::<User>(self.inner.keys.user(id))
            .await?
            .map(Arc::new);
        if let Some(user) = &user {
            cache.put_user(generation, Arc::clone(user));
        }
        Ok(user)
    }

    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError> {
        let cache = &self.inner.cache;
        if let Some(org) = cache.org(id) {
            return Ok(Some(org));
        }
        let generation = cache.generation();
        let org = self
            .get_json::<Org>(self.inner.keys.org(id))
            .await?
            .map(Arc::new);
        if let Some(org) = &org {
            cache.put_org(generation, Arc::clone(org));
        }
        Ok(org)
    }

    async fn create_user(&self, org: Org, user: User) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.create_user.prepare_invoke();
        call.key(keys.email(&user.email))
            .key(keys.user(&user.id))
            .key(keys.org(&org.id))
            .arg(&user.id)
            .arg(to_json(&user)?)
            .arg(to_json(&org)?);
        match self.run(call.invoke_async::<i64>(&mut conn)).await? {
            1 => Ok(()),
            _ => Err(StoreError::EmailTaken),
        }
    }

    async fn save_user(&self, user: User) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let key = self.inner.keys.user(&user.id);
        self.run(conn.set::<_, _, ()>(key, to_json(&user)?)).await?;
        self.inner.cache.apply(Event::UserChanged(&user.id));
        self.publish(Event::UserChanged(&user.id)).await
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, session: Session) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.create_session.prepare_invoke();
        call.key(keys.session(&session.user_id, &session.id))
            .key(keys.user_sessions(&session.user_id))
            .arg(to_json(&session)?)
            .arg(session.expires_at)
            .arg(&session.id);
        self.run(call.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }

    async fn is_live(&self, user_id: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        let cache = &self.inner.cache;
        if cache.has_session(user_id, id, now) {
            return Ok(true);
        }
        let generation = cache.generation();
        let session = self
            .get_json::<Session>(self.inner.keys.session(user_id, id))
            .await?
            .filter(|s| s.is_live(now) && s.user_id == user_id);
        let live = session.is_some();
        if let Some(session) = session {
            cache.put_session(generation, session);
        }
        Ok(live)
    }

    async fn extend(
        &self,
        user_id: &str,
        id: &str,
        expires_at: i64,
        _now: i64,
    ) -> Result<bool, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.extend_session.prepare_invoke();
        call.key(keys.session(user_id, id))
            .key(keys.user_sessions(user_id))
            .arg(expires_at);
        let extended: i64 = self.run(call.invoke_async(&mut conn)).await?;
        // The cached copy still carries the old expiry; the next read fetches the new one.
        self.inner.cache.forget_session(id);
        Ok(extended == 1)
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.revoke_session.prepare_invoke();
        call.key(keys.session(user_id, id))
            .key(keys.user_sessions(user_id))
            .arg(id);
        let removed: i64 = self.run(call.invoke_async(&mut conn)).await?;
        self.inner.cache.forget_session(id);
        self.publish(Event::SessionRevoked(id)).await?;
        Ok(removed > 0)
    }

    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.revoke_user.prepare_invoke();
        call.key(keys.user_sessions(user_id))
            .arg(keys.session_prefix(user_id))
            .arg(keep.unwrap_or(""));
        let removed: i64 = self.run(call.invoke_async(&mut conn)).await?;
        self.inner.cache.apply(Event::UserSessionsRevoked(user_id));
        self.publish(Event::UserSessionsRevoked(user_id)).await?;
        Ok(usize::try_from(removed).unwrap_or(0))
    }

    async fn sweep(&self, _now: i64) {
        // Redis expires sessions by itself (EXAT on every session key).
    }
}

#[async_trait]
impl ChallengeStore for RedisStore {
    async fn create_challenge(&self, challenge: Challenge) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let key = self.inner.keys.challenge(&challenge.id);
        let expires_at = u64::try_from(challenge.expires_at).unwrap_or(0);
        let cmd = redis::cmd("SET")
            .arg(key)
            .arg(to_json(&challenge)?)
            .arg("EXAT")
            .arg(expires_at)
            .to_owned();
        self.run(cmd.query_async::<()>(&mut conn)).await
    }

    async fn attempt(
        &self,
        id: &str,
        code_hash: &str,
        max_attempts: u32,
        now: i64,
    ) -> Result<Attempt, StoreError> {
        let mut conn = self.conn();
        let mut call = self.inner.scripts.attempt.prepare_invoke();
        call.key(self.inner.keys.challenge(id))
            .arg(code_hash)
            .arg(max_attempts);
        let (outcome, detail): (i64, String) = self.run(call.invoke_async(&mut conn)).await?;
        Ok(match outcome {
            1 => {
                let challenge: Challenge = serde_json::from_str(&detail)
                    .map_err(|e| unavailable(format!("unreadable challenge: {e}")))?;
                if challenge.expires_at <= now {
                    Attempt::Unknown
                } else {
                    Attempt::Passed(challenge)
                }
            }
            2 => Attempt::Exhausted,
            3 => Attempt::Wrong {
                remaining: detail.parse().unwrap_or(0),
            },
            _ => Attempt::Unknown,
        })
    }

    async fn delete_challenge(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        self.run(conn.del::<_, ()>(self.inner.keys.challenge(id)))
            .await
    }
}

#[async_trait]
impl DeviceStore for RedisStore {
    async fn trust_device(
        &self,
        user_id: &str,
        hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.create_session.prepare_invoke();
        call.key(format!("{}{hash}", keys.device_prefix(user_id)))
            .key(keys.devices(user_id))
            .arg("1")
            .arg(expires_at)
            .arg(hash);
        self.run(call.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }

    async fn is_trusted(&self, user_id: &str, hash: &str, _now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let key = format!("{}{hash}", self.inner.keys.device_prefix(user_id));
        self.run(conn.exists::<_, bool>(key)).await
    }

    async fn forget_devices(&self, user_id: &str) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.revoke_user.prepare_invoke();
        call.key(keys.devices(user_id))
            .arg(keys.device_prefix(user_id))
            .arg("");
        self.run(call.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }
}

#[async_trait]
impl LimitStore for RedisStore {
    async fn hit(&self, key: &str, per_minute: NonZeroU32) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.conn();
        let emission_ms = (60_000 / u64::from(per_minute.get())).max(1);
        let mut call = self.inner.scripts.rate_limit.prepare_invoke();
        call.key(self.inner.keys.limit(key))
            .arg(emission_ms)
            .arg(per_minute.get());
        let wait_ms: i64 = self.run(call.invoke_async(&mut conn)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs())))
    }

    async fn reserve(
        &self,
        account: &str,
        client: IpAddr,
        limits: [u32; 2],
        window: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        let [client_key, account_key] = self.inner.keys.failures(account, client);
        let mut conn = self.conn();
        let mut call = self.inner.scripts.reserve_attempt.prepare_invoke();
        call.key(account_key)
            .key(client_key)
            .arg(limits[0])
            .arg(limits[1])
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1));
        let wait_ms: i64 = self.run(call.invoke_async(&mut conn)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs())))
    }

    async fn clear_failures(&self, account: &str, client: IpAddr) -> Result<(), StoreError> {
        let keys = self.inner.keys.failures(account, client);
        let mut conn = self.conn();
        self.run(conn.del::<_, ()>(&keys)).await
    }
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
