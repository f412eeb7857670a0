//! A per-instance cache of what Redis holds, trusted only while this instance hears every change.
//!
//! Entries are used only while the pub/sub subscription is up (`usable`); every change message
//! bumps `generation`, and a value read from Redis is kept only if no change arrived while it
//! was being read. A revocation therefore reaches every instance as fast as pub/sub delivers it,
//! and a lost subscription empties the cache instead of serving stale sessions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::model::{Org, Session, User};

/// Upper bound on cached entries per kind; past it the kind is emptied.
const MAX_ENTRIES: usize = 200_000;

pub struct Cache {
    usable: AtomicBool,
    generation: AtomicU64,
    ttl: Duration,
    sessions: DashMap<String, (Session, Instant)>,
    users: DashMap<String, (Arc<User>, Instant)>,
    orgs: DashMap<String, (Arc<Org>, Instant)>,
}

/// A change announced on the events channel.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    SessionRevoked(&'a str),
    UserSessionsRevoked(&'a str),
    UserChanged(&'a str),
    OrgChanged(&'a str),
    Everything,
}

impl Event<'_> {
    pub fn encode(&self) -> String {
        match self {
            Event::SessionRevoked(id) => format!("s {id}"),
            Event::UserSessionsRevoked(id) => format!("us {id}"),
            Event::UserChanged(id) => format!("u {id}"),
            Event::OrgChanged(id) => format!("o {id}"),
            Event::Everything => "*".into(),
        }
    }

    /// Anything unreadable is treated as "everything changed": safe, if wasteful.
    pub fn decode(msg: &str) -> Event<'_> {
        match msg.split_once(' ') {
            Some(("s", id)) => Event::SessionRevoked(id),
            Some(("us", id)) => Event::UserSessionsRevoked(id),
            Some(("u", id)) => Event::UserChanged(id),
            Some(("o", id)) => Event::OrgChanged(id),
            _ => Event::Everything,
        }
    }
}

impl Cache {
    pub fn new(ttl: Duration) -> Cache {
        Cache {
            usable: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            ttl,
            sessions: DashMap::new(),
            users: DashMap::new(),
            orgs: DashMap::new(),
        }
    }

    fn on(&self) -> bool {
        !self.ttl.is_zero() && self.usable.load(Ordering::Acquire)
    }

    /// Read before fetching from Redis; hand back to `put_*` with the fetched value.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn has_session(&self, user_id: &str, id: &str, now: i64) -> bool {
        self.on()
            && self.sessions.get(id).is_some_and(|entry| {
                let (s, at) = entry.value();
                s.user_id == user_id && s.is_live(now) && at.elapsed() < self.ttl
            })
    }

    pub fn put_session(&self, generation: u64, session: Session) {
        let id = session.id.clone();
        self.put(&self.sessions, generation, id, session);
    }

    pub fn forget_session(&self, id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.sessions.remove(id);
    }

    pub fn user(&self, id: &str) -> Option<Arc<User>> {
        self.get(&self.users, id)
    }

    pub fn put_user(&self, generation: u64, user: Arc<User>) {
        self.put(&self.users, generation, user.id.clone(), user);
    }

    pub fn org(&self, id: &str) -> Option<Arc<Org>> {
        self.get(&self.orgs, id)
    }

    pub fn put_org(&self, generation: u64, org: Arc<Org>) {
        self.put(&self.orgs, generation, org.id.clone(), org);
    }

    fn get<T: Clone>(&self, map: &DashMap<String, (T, Instant)>, id: &str) -> Option<T> {
        if !self.on() {
            return None;
        }
        let entry = map.get(id)?;
        let (value, at) = entry.value();
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    fn put<T>(&self, map: &DashMap<String, (T, Instant)>, generation: u64, id: String, value: T) {
        if !self.on() || generation != self.generation() {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(id.clone(), (value, Instant::now()));
        // A change that raced with the insert wins: drop what may be stale.
        if generation != self.generation() {
            map.remove(&id);
        }
    }

    pub fn apply(&self, event: Event<'_>) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        match event {
            Event::SessionRevoked(id) => {
                self.sessions.remove(id);
            }
            Event::UserSessionsRevoked(user) => self.sessions.retain(|_, (s, _)| s.user_id != user),
            Event::UserChanged(user) => {
                self.users.remove(user);
            }
            Event::OrgChanged(org) => {
                self.orgs.remove(org);
            }
            Event::Everything => self.clear(),
        }
    }

    /// Start (or stop) trusting the cache, always from empty.
    pub fn reset(&self, usable: bool) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.usable.store(usable, Ordering::Release);
        self.clear();
    }

    fn clear(&self) {
        self.sessions.clear();
        self.users.clear();
        self.orgs.clear();
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
