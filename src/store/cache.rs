//! A per-instance read cache in front of a shared store (`Cached`), trusted only while this
//! instance hears every change made elsewhere.
//!
//! Entries are used only while the store's change feed is up (`usable`; for Redis, its pub/sub
//! subscription, see `redis::Listener`); every change
//! bumps `generation`, and a value read from Redis is kept only if no change arrived while it
//! was being read. A revocation therefore reaches every instance as fast as pub/sub delivers it,
//! and a lost subscription empties the cache instead of serving stale sessions.
//!
//! Each kind is a TinyUFO cache of bounded size that evicts one entry at a time. "Everything
//! changed" and "all of a user's sessions revoked" are epochs that entries must match, so they
//! take effect at once without walking the caches.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ufo::Ufo;
use dashmap::DashMap;

use async_trait::async_trait;

use super::{Linked, SessionStore, StoreError, UserStore};
use crate::model::{IdentityLink, Org, Session, User};

/// How many entries of each kind are kept. Past it, TinyUFO lets the least used go one at a
/// time; nothing is ever cleared wholesale because it is full.
const MAX_ENTRIES: usize = 200_000;

/// A cached value, with what it must still match to be used: its key (the cache is keyed by a
/// 64-bit hash), the epoch it was read in, and for a session its user's revocation epoch.
#[derive(Clone)]
struct Entry<T> {
    key: Arc<str>,
    value: T,
    at: Instant,
    epoch: u64,
    user_epoch: u64,
}

pub struct Cache {
    usable: AtomicBool,
    generation: AtomicU64,
    /// Moves on when everything changed (an import, a lost subscription): every older entry is
    /// dead at once, without walking the caches.
    epoch: AtomicU64,
    /// Per user, moves on when all their sessions were revoked. Only users who had such a
    /// revocation since the last epoch have one, so it stays small; it is never evicted, since
    /// forgetting one would bring revoked sessions back.
    user_epochs: DashMap<String, u64>,
    ttl: Duration,
    hasher: foldhash::fast::RandomState,
    sessions: Ufo<u64, Entry<Session>>,
    users: Ufo<u64, Entry<Arc<User>>>,
    orgs: Ufo<u64, Entry<Arc<Org>>>,
}

/// A change announced on the events channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    SessionRevoked(&'a str),
    UserSessionsRevoked(&'a str),
    UserChanged(&'a str),
    OrgChanged(&'a str),
    Everything,
    /// The `issuedBefore` cut-off rose to this (not a cache matter: the listener applies it to
    /// `revocation::Revocations`).
    NotBefore(i64),
}

impl Event<'_> {
    pub fn encode(&self) -> String {
        match self {
            Event::SessionRevoked(id) => format!("s {id}"),
            Event::UserSessionsRevoked(id) => format!("us {id}"),
            Event::UserChanged(id) => format!("u {id}"),
            Event::OrgChanged(id) => format!("o {id}"),
            Event::Everything => "*".into(),
            Event::NotBefore(t) => format!("nb {t}"),
        }
    }

    /// Anything unreadable is treated as "everything changed": safe, if wasteful.
    pub fn decode(msg: &str) -> Event<'_> {
        match msg.split_once(' ') {
            Some(("s", id)) => Event::SessionRevoked(id),
            Some(("us", id)) => Event::UserSessionsRevoked(id),
            Some(("u", id)) => Event::UserChanged(id),
            Some(("o", id)) => Event::OrgChanged(id),
            Some(("nb", t)) => match t.parse() {
                Ok(t) => Event::NotBefore(t),
                Err(_) => Event::Everything,
            },
            _ => Event::Everything,
        }
    }
}

impl Cache {
    pub fn new(ttl: Duration) -> Cache {
        Cache {
            usable: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            user_epochs: DashMap::new(),
            ttl,
            hasher: foldhash::fast::RandomState::default(),
            sessions: Ufo::new(MAX_ENTRIES),
            users: Ufo::new(MAX_ENTRIES),
            orgs: Ufo::new(MAX_ENTRIES),
        }
    }

    fn on(&self) -> bool {
        !self.ttl.is_zero() && self.usable.load(Ordering::Acquire)
    }

    /// Read before fetching from Redis; hand back to `put_*` with the fetched value.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn key(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn user_epoch(&self, user: &str) -> u64 {
        self.user_epochs.get(user).map_or(0, |e| *e)
    }

    /// The entry for `id`, if it is the right one and still current.
    fn get<T: Clone + Send + Sync + 'static>(
        &self,
        map: &Ufo<u64, Entry<T>>,
        id: &str,
    ) -> Option<Entry<T>> {
        if !self.on() {
            return None;
        }
        let entry = map.get(&self.key(id))?;
        (&*entry.key == id
            && entry.epoch == self.epoch.load(Ordering::Acquire)
            && entry.at.elapsed() < self.ttl)
            .then_some(entry)
    }

    fn put<T: Clone + Send + Sync + 'static>(
        &self,
        map: &Ufo<u64, Entry<T>>,
        generation: u64,
        id: &str,
        value: T,
        user_epoch: u64,
    ) {
        if !self.on() || generation != self.generation() {
            return;
        }
        let entry = Entry {
            key: id.into(),
            value,
            at: Instant::now(),
            epoch: self.epoch.load(Ordering::Acquire),
            user_epoch,
        };
        let key = self.key(id);
        map.put(key, entry);
        // A change that raced with the insert wins: drop what may be stale.
        if generation != self.generation() {
            map.remove(key);
        }
    }

    pub fn has_session(&self, user_id: &str, id: &str, now: i64) -> bool {
        self.get(&self.sessions, id).is_some_and(|e| {
            e.value.serves(user_id, now) && e.user_epoch == self.user_epoch(user_id)
        })
    }

    pub fn put_session(&self, generation: u64, session: Session) {
        let user_epoch = self.user_epoch(&session.user_id);
        let id = session.id.clone();
        self.put(&self.sessions, generation, &id, session, user_epoch);
    }

    pub fn forget_session(&self, id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.sessions.remove(self.key(id));
    }

    pub fn user(&self, id: &str) -> Option<Arc<User>> {
        self.get(&self.users, id).map(|e| e.value)
    }

    pub fn put_user(&self, generation: u64, user: Arc<User>) {
        let id = user.id.clone();
        self.put(&self.users, generation, &id, user, 0);
    }

    pub fn org(&self, id: &str) -> Option<Arc<Org>> {
        self.get(&self.orgs, id).map(|e| e.value)
    }

    pub fn put_org(&self, generation: u64, org: Arc<Org>) {
        let id = org.id.clone();
        self.put(&self.orgs, generation, &id, org, 0);
    }

    pub fn apply(&self, event: Event<'_>) {
        if let Event::NotBefore(_) = event {
            return;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        match event {
            Event::SessionRevoked(id) => {
                self.sessions.remove(self.key(id));
            }
            Event::UserSessionsRevoked(user) => {
                *self.user_epochs.entry(user.to_owned()).or_insert(0) += 1;
            }
            Event::UserChanged(user) => {
                self.users.remove(self.key(user));
            }
            Event::OrgChanged(org) => {
                self.orgs.remove(self.key(org));
            }
            Event::Everything => self.clear(),
            Event::NotBefore(_) => {}
        }
    }

    /// Start (or stop) trusting the cache, always from empty.
    pub fn reset(&self, usable: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.clear();
        self.usable.store(usable, Ordering::Release);
    }

    /// Every entry dies at once by moving the epoch on; the per-user epochs, all older than
    /// it, go too.
    fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.user_epochs.clear();
    }
}

/// A store behind the cache: reads of users, organizations and sessions are answered from the
/// cache when it holds them, and every change made through this wrapper drops what it touched.
/// Changes made by other instances arrive through the store's change feed, which applies them
/// to the same `Cache`.
pub struct Cached<S> {
    inner: S,
    cache: Arc<Cache>,
}

impl<S> Cached<S> {
    pub fn new(inner: S, cache: Arc<Cache>) -> Cached<S> {
        Cached { inner, cache }
    }
}

#[async_trait]
impl<S: UserStore> UserStore for Cached<S> {
    async fn user_by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        // The email index is not cached (an email may move); the record it names is.
        match self.inner.user_id_by_email(email).await? {
            Some(id) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }

    async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        self.inner.user_id_by_email(email).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError> {
        if let Some(user) = self.cache.user(id) {
            return Ok(Some(user));
        }
        let generation = self.cache.generation();
        let user = self.inner.user_by_id(id).await?;
        if let Some(user) = &user {
            self.cache.put_user(generation, Arc::clone(user));
        }
        Ok(user)
    }

    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError> {
        if let Some(org) = self.cache.org(id) {
            return Ok(Some(org));
        }
        let generation = self.cache.generation();
        let org = self.inner.org(id).await?;
        if let Some(org) = &org {
            self.cache.put_org(generation, Arc::clone(org));
        }
        Ok(org)
    }

    async fn create_user(&self, org: Option<Org>, user: User) -> Result<(), StoreError> {
        self.inner.create_user(org, user).await
    }

    async fn save_user(&self, user: User) -> Result<(), StoreError> {
        let id = user.id.clone();
        let saved = self.inner.save_user(user).await;
        self.cache.apply(Event::UserChanged(&id));
        saved
    }

    // Links are read once per single sign-on, never on the proxied path: not cached.
    async fn user_id_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.user_id_by_identity(issuer, subject).await
    }

    async fn link_identity(&self, link: IdentityLink) -> Result<Linked, StoreError> {
        self.inner.link_identity(link).await
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Cached<S> {
    async fn create(&self, session: Session) -> Result<(), StoreError> {
        self.inner.create(session).await
    }

    async fn is_live(&self, user_id: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        if self.cache.has_session(user_id, id, now) {
            return Ok(true);
        }
        let generation = self.cache.generation();
        let session = self.inner.session(user_id, id).await?;
        match session {
            Some(session) if session.serves(user_id, now) => {
                self.cache.put_session(generation, session);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn session(&self, user_id: &str, id: &str) -> Result<Option<Session>, StoreError> {
        self.inner.session(user_id, id).await
    }

    // Asked only by the admin API, never on the proxied path: not cached.
    async fn owner(&self, id: &str, now: i64) -> Result<Option<String>, StoreError> {
        self.inner.owner(id, now).await
    }

    async fn extend(
        &self,
        user_id: &str,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let extended = self.inner.extend(user_id, id, expires_at, now).await;
        // The cached copy carries the old expiry; the next read fetches the new one.
        self.cache.forget_session(id);
        extended
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let revoked = self.inner.revoke(user_id, id).await;
        self.cache.forget_session(id);
        revoked
    }

    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let revoked = self.inner.revoke_user(user_id, keep).await;
        self.cache.apply(Event::UserSessionsRevoked(user_id));
        revoked
    }

    async fn sweep(&self, now: i64) {
        self.inner.sweep(now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session {
            id: id.into(),
            user_id: "u".into(),
            created_at: 0,
            expires_at: 100,
            family: crate::model::Family::Profile,
        }
    }

    #[test]
    fn unusable_until_subscribed() {
        let c = Cache::new(Duration::from_secs(30));
        c.put_session(c.generation(), session("a"));
        assert!(!c.has_session("u", "a", 0));
        c.reset(true);
        c.put_session(c.generation(), session("a"));
        assert!(c.has_session("u", "a", 0));
        assert!(!c.has_session("other", "a", 0));
        assert!(!c.has_session("u", "a", 100), "expired");
        c.reset(false);
        assert!(!c.has_session("u", "a", 0));
    }

    #[test]
    fn a_change_during_the_fetch_discards_the_value() {
        let c = Cache::new(Duration::from_secs(30));
        c.reset(true);
        let before = c.generation();
        c.apply(Event::SessionRevoked("a"));
        c.put_session(before, session("a"));
        assert!(!c.has_session("u", "a", 0));
    }

    #[test]
    fn events_remove_what_they_name() {
        let c = Cache::new(Duration::from_secs(30));
        c.reset(true);
        c.put_session(c.generation(), session("a"));
        c.put_session(c.generation(), session("b"));
        c.apply(Event::decode("s a"));
        assert!(!c.has_session("u", "a", 0));
        assert!(c.has_session("u", "b", 0));
        c.apply(Event::decode("us u"));
        assert!(!c.has_session("u", "b", 0));
    }

    #[test]
    fn the_cut_off_event_round_trips_and_leaves_the_cache_alone() {
        assert_eq!(
            Event::decode(&Event::NotBefore(1_700_000_000).encode()),
            Event::NotBefore(1_700_000_000)
        );
        assert_eq!(
            Event::decode("nb soon"),
            Event::Everything,
            "unreadable: safe side"
        );
        let c = Cache::new(Duration::from_secs(30));
        c.reset(true);
        c.put_session(c.generation(), session("a"));
        c.apply(Event::NotBefore(5));
        assert!(c.has_session("u", "a", 0));
    }

    #[test]
    fn a_full_cache_lets_some_go_not_all() {
        let c = Cache::new(Duration::from_secs(30));
        c.reset(true);
        let n = MAX_ENTRIES + 1000;
        for i in 0..n {
            c.put_session(c.generation(), session(&format!("s{i}")));
        }
        let kept = (0..n)
            .filter(|i| c.has_session("u", &format!("s{i}"), 0))
            .count();
        assert!(kept > MAX_ENTRIES / 2 && kept <= MAX_ENTRIES, "{kept}");
    }

    #[test]
    fn everything_changed_drops_every_entry_at_once() {
        let c = Cache::new(Duration::from_secs(30));
        c.reset(true);
        c.put_session(c.generation(), session("a"));
        c.put_user(
            c.generation(),
            Arc::new(User {
                id: "u".into(),
                email: "a@b.c".into(),
                password_hash: String::new(),
                first_name: String::new(),
                last_name: String::new(),
                account_type: crate::model::AccountType::User,
                customer_id: String::new(),
                org: "o".into(),
                status: crate::model::Status::Active,
                mfa_enabled: false,
                profile: Default::default(),
            }),
        );
        assert!(c.user("u").is_some());
        c.apply(Event::Everything);
        assert!(!c.has_session("u", "a", 0));
        assert!(c.user("u").is_none());
    }

    #[test]
    fn events_round_trip() {
        for e in [
            Event::SessionRevoked("x"),
            Event::UserSessionsRevoked("y"),
            Event::UserChanged("z"),
            Event::OrgChanged("o"),
            Event::Everything,
        ] {
            assert_eq!(Event::decode(&e.encode()), e);
        }
        assert_eq!(Event::decode("garbage"), Event::Everything);
    }
}
