//! In-process store: users from the users file, sessions in a concurrent map.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use dashmap::DashMap;

use super::users_file::UsersFile;
use super::{SessionStore, StoreError, StoreHealth, UserStore};
use crate::model::{Org, Session, User};

/// Users and organizations, indexed for the lookups the request path makes.
#[derive(Default)]
struct Directory {
    users_by_id: HashMap<String, Arc<User>>,
    ids_by_email: HashMap<String, String>,
    orgs: HashMap<String, Arc<Org>>,
}

impl Directory {
    fn from_file(file: &UsersFile) -> Directory {
        let mut dir = Directory::default();
        for org in &file.orgs {
            dir.orgs.insert(org.id.clone(), Arc::new(org.clone()));
        }
        for user in &file.users {
            dir.ids_by_email.insert(user.email.clone(), user.id.clone());
            dir.users_by_id
                .insert(user.id.clone(), Arc::new(user.clone()));
        }
        dir
    }
}

pub struct MemoryUsers {
    dir: RwLock<Arc<Directory>>,
}

impl MemoryUsers {
    pub fn new(file: &UsersFile) -> MemoryUsers {
        MemoryUsers {
            dir: RwLock::new(Arc::new(Directory::from_file(file))),
        }
    }

    /// Replace the whole directory, e.g. after the users file was reloaded.
    pub fn replace(&self, file: &UsersFile) {
        let fresh = Arc::new(Directory::from_file(file));
        match self.dir.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    fn snapshot(&self) -> Arc<Directory> {
        match self.dir.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

#[async_trait]
impl UserStore for MemoryUsers {
    async fn user_by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        let dir = self.snapshot();
        Ok(dir
            .ids_by_email
            .get(email)
            .and_then(|id| dir.users_by_id.get(id))
            .cloned())
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError> {
        Ok(self.snapshot().users_by_id.get(id).cloned())
    }

    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError> {
        Ok(self.snapshot().orgs.get(id).cloned())
    }
}

#[derive(Default)]
pub struct MemorySessions {
    sessions: DashMap<String, Session>,
}

impl MemorySessions {
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, session: Session) -> Result<(), StoreError> {
        self.sessions.insert(session.id.clone(), session);
        Ok(())
    }

    async fn get(&self, user_id: &str, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
        Ok(self
            .sessions
            .get(id)
            .filter(|s| s.is_live(now) && s.user_id == user_id)
            .map(|s| s.clone()))
    }

    async fn extend(
        &self,
        user_id: &str,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(match self.sessions.get_mut(id) {
            Some(mut s) if s.is_live(now) && s.user_id == user_id => {
                s.expires_at = expires_at;
                true
            }
            _ => false,
        })
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .sessions
            .remove_if(id, |_, s| s.user_id == user_id)
            .is_some())
    }

    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let before = self.sessions.len();
        self.sessions
            .retain(|id, s| s.user_id != user_id || Some(id.as_str()) == keep);
        Ok(before.saturating_sub(self.sessions.len()))
    }

    async fn sweep(&self, now: i64) {
        self.sessions.retain(|_, s| s.is_live(now));
    }
}

/// The memory backend is always ready.
pub struct AlwaysReady;

#[async_trait]
impl StoreHealth for AlwaysReady {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, user: &str, expires_at: i64) -> Session {
        Session {
            id: id.into(),
            user_id: user.into(),
            created_at: 0,
            expires_at,
        }
    }

    #[tokio::test]
    async fn session_lifecycle() {
        let store = MemorySessions::default();
        store.create(session("a", "u", 100)).await.unwrap();
        assert!(store.get("u", "a", 50).await.unwrap().is_some());
        assert!(
            store.get("v", "a", 50).await.unwrap().is_none(),
            "owner must match"
        );
        assert!(
            store.get("u", "a", 100).await.unwrap().is_none(),
            "dead at expires_at"
        );
        assert!(store.extend("u", "a", 200, 50).await.unwrap());
        assert!(store.get("u", "a", 150).await.unwrap().is_some());
        assert!(
            !store.extend("u", "a", 500, 250).await.unwrap(),
            "a dead session is not revived"
        );
        assert!(
            !store.revoke("v", "a").await.unwrap(),
            "only the owner's session is revoked"
        );
        assert!(store.revoke("u", "a").await.unwrap());
        assert!(store.get("u", "a", 10).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn revoke_user_keeps_one() {
        let store = MemorySessions::default();
        for (id, user) in [("a", "u"), ("b", "u"), ("c", "v")] {
            store.create(session(id, user, 100)).await.unwrap();
        }
        assert_eq!(store.revoke_user("u", Some("b")).await.unwrap(), 1);
        assert!(store.get("u", "a", 0).await.unwrap().is_none());
        assert!(store.get("u", "b", 0).await.unwrap().is_some());
        assert!(store.get("v", "c", 0).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn sweep_forgets_dead_sessions() {
        let store = MemorySessions::default();
        store.create(session("a", "u", 10)).await.unwrap();
        store.create(session("b", "u", 100)).await.unwrap();
        store.sweep(50).await;
        assert_eq!(store.len(), 1);
    }
}
