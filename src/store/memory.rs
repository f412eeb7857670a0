//! In-process store: users from the users file (every change written back to it durably before
//! it is acknowledged), sessions in a concurrent map.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use dashmap::DashMap;

use super::users_file::{UsersFile, UsersFileError};
use super::{
    Attempt, ChallengeStore, Claim, DeviceStore, Linked, LoginStore, RevocationStore, SessionStore,
    StoreError, StoreHealth, UserStore, judge_attempt,
};
use crate::model::{Challenge, IdentityLink, Org, PendingLogin, Session, User};
use crate::revocation::Revocations;

/// The hasher of the maps every proxied request reads, whose keys the gateway made (user,
/// organization and session ids): randomly seeded, and several times cheaper than SipHash. Maps
/// keyed by what clients choose (emails, SSO subjects) keep the standard library's.
type ServerKeys = foldhash::fast::RandomState;

/// Users and organizations, indexed for the lookups the request path makes.
#[derive(Default)]
struct Directory {
    users_by_id: HashMap<String, Arc<User>, ServerKeys>,
    ids_by_email: HashMap<String, String>,
    orgs: HashMap<String, Arc<Org>, ServerKeys>,
    /// `(issuer, subject)` -> user id.
    ids_by_identity: HashMap<(String, String), String>,
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
        for link in &file.links {
            dir.ids_by_identity.insert(
                (link.issuer.clone(), link.subject.clone()),
                link.user.clone(),
            );
        }
        dir
    }
}

pub struct MemoryUsers {
    /// What requests read: swapped whole, never locked.
    dir: ArcSwap<Directory>,
    /// The file as last written or read. A writer holds this lock from reading it to the end of
    /// the fsync, so concurrent writes are applied one after another and none is lost.
    file: tokio::sync::Mutex<UsersFile>,
    /// Where changes are written; `None` keeps them in memory only.
    path: Option<PathBuf>,
    /// Modification time of the file as this process last wrote or read it, so that a reload
    /// notices edits made by others and skips our own writes.
    seen_mtime: Mutex<Option<SystemTime>>,
}

fn mtime(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl MemoryUsers {
    pub fn new(file: UsersFile, path: Option<PathBuf>) -> MemoryUsers {
        let seen = path.as_deref().and_then(mtime);
        MemoryUsers {
            dir: ArcSwap::from_pointee(Directory::from_file(&file)),
            file: tokio::sync::Mutex::new(file),
            path,
            seen_mtime: Mutex::new(seen),
        }
    }

    fn set_seen(&self, t: Option<SystemTime>) {
        match self.seen_mtime.lock() {
            Ok(mut g) => *g = t,
            Err(poisoned) => *poisoned.into_inner() = t,
        }
    }

    fn seen(&self) -> Option<SystemTime> {
        match self.seen_mtime.lock() {
            Ok(g) => *g,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Re-read the users file if someone else changed it since. A broken file is refused and
    /// the users in memory stay as they were. Returns whether anything was reloaded.
    pub async fn reload_if_changed(&self, force: bool) -> Result<bool, UsersFileError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let mut file = self.file.lock().await;
        // Polled every second from an async task: ask the blocking-free way.
        let now = tokio::fs::metadata(path)
            .await
            .and_then(|m| m.modified())
            .ok();
        if !force && now == self.seen() {
            return Ok(false);
        }
        // Whatever the outcome, this version has been looked at: a broken file is reported
        // once, and the next edit is picked up.
        self.set_seen(now);
        let owned = path.clone();
        let fresh = tokio::task::spawn_blocking(move || UsersFile::load(&owned))
            .await
            .map_err(|e| UsersFileError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })??;
        self.dir.store(Arc::new(Directory::from_file(&fresh)));
        *file = fresh;
        Ok(true)
    }

    /// Apply `change` to the users file, write it durably, then publish it to readers.
    async fn write(
        &self,
        change: impl FnOnce(&mut UsersFile) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut file = self.file.lock().await;
        let mut next = file.clone();
        change(&mut next)?;
        if let Some(path) = &self.path {
            let (to_save, target) = (next.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                to_save.save_atomic(&target).map(|()| mtime(&target))
            })
            .await
            .map_err(|e| StoreError::unavailable("users file writer", e))?
            .map(|written| self.set_seen(written))
            .map_err(|e| {
                StoreError::unavailable(
                    "users file",
                    format!("cannot write {}: {e}", path.display()),
                )
            })?;
        }
        self.dir.store(Arc::new(Directory::from_file(&next)));
        *file = next;
        Ok(())
    }

    fn snapshot(&self) -> Arc<Directory> {
        self.dir.load_full()
    }
}

#[async_trait]
impl UserStore for MemoryUsers {
    async fn user_by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        // One snapshot for both lookups.
        let dir = self.snapshot();
        Ok(dir
            .ids_by_email
            .get(email)
            .and_then(|id| dir.users_by_id.get(id))
            .cloned())
    }

    async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        Ok(self.snapshot().ids_by_email.get(email).cloned())
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError> {
        Ok(self.snapshot().users_by_id.get(id).cloned())
    }

    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError> {
        Ok(self.snapshot().orgs.get(id).cloned())
    }

    async fn create_user(&self, org: Option<Org>, user: User) -> Result<(), StoreError> {
        self.write(|file| {
            if file.users.iter().any(|u| u.email == user.email) {
                return Err(StoreError::EmailTaken);
            }
            match org {
                Some(org) => file.orgs.push(org),
                None if !file.orgs.iter().any(|o| o.id == user.org) => {
                    return Err(StoreError::unavailable(
                        "users file",
                        format!("no org has id {}", user.org),
                    ));
                }
                None => {}
            }
            file.users.push(user);
            Ok(())
        })
        .await
    }

    async fn save_user(&self, user: User) -> Result<(), StoreError> {
        self.write(|file| {
            let slot = file
                .users
                .iter_mut()
                .find(|u| u.id == user.id)
                .ok_or_else(|| {
                    StoreError::unavailable("users file", format!("user {} vanished", user.id))
                })?;
            *slot = user;
            Ok(())
        })
        .await
    }

    async fn user_id_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .snapshot()
            .ids_by_identity
            .get(&(issuer.to_owned(), subject.to_owned()))
            .cloned())
    }

    async fn link_identity(&self, link: IdentityLink) -> Result<Linked, StoreError> {
        let mut outcome = Linked::Owner(link.user.clone());
        self.write(|file| {
            if let Some(existing) = file
                .links
                .iter()
                .find(|l| l.issuer == link.issuer && l.subject == link.subject)
            {
                outcome = Linked::Owner(existing.user.clone());
                return Ok(());
            }
            if file
                .links
                .iter()
                .any(|l| l.issuer == link.issuer && l.user == link.user)
            {
                outcome = Linked::Conflict;
                return Ok(());
            }
            if !file.users.iter().any(|u| u.id == link.user) {
                return Err(StoreError::unavailable(
                    "users file",
                    format!("user {} vanished", link.user),
                ));
            }
            file.links.push(link);
            Ok(())
        })
        .await?;
        Ok(outcome)
    }
}

/// Logins started at an identity provider, in process.
#[derive(Default)]
pub struct MemoryLogins {
    logins: DashMap<String, PendingLogin>,
}

#[async_trait]
impl LoginStore for MemoryLogins {
    async fn put_login(&self, key: &str, login: PendingLogin) -> Result<(), StoreError> {
        self.logins.insert(key.to_owned(), login);
        Ok(())
    }

    async fn take_login(&self, key: &str, binding: &str, now: i64) -> Result<Claim, StoreError> {
        // `remove_if` decides and removes under the entry's lock: one caller takes it.
        let taken = self.logins.remove_if(key, |_, l| {
            l.expires_at > now && crate::mfa::same_hash(&l.binding, binding)
        });
        Ok(match taken {
            Some((_, login)) => Claim::Taken(login),
            None => match self.logins.get(key) {
                Some(l) if l.expires_at > now => Claim::OtherBrowser,
                _ => Claim::Unknown,
            },
        })
    }

    async fn sweep(&self, now: i64) {
        self.logins.retain(|_, l| l.expires_at > now);
    }
}

#[derive(Default)]
pub struct MemorySessions {
    sessions: DashMap<String, Session, ServerKeys>,
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

    async fn is_live(&self, user_id: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        // Without cloning the record: this runs on every authenticated request.
        Ok(self
            .sessions
            .get(id)
            .is_some_and(|s| s.serves(user_id, now)))
    }

    async fn session(&self, user_id: &str, id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self
            .sessions
            .get(id)
            .filter(|s| s.user_id == user_id)
            .map(|s| s.clone()))
    }

    async fn owner(&self, id: &str, now: i64) -> Result<Option<String>, StoreError> {
        Ok(self
            .sessions
            .get(id)
            .filter(|s| s.is_live(now))
            .map(|s| s.user_id.clone()))
    }

    async fn extend(
        &self,
        user_id: &str,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        Ok(match self.sessions.get_mut(id) {
            Some(mut s) if s.serves(user_id, now) => {
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

/// MFA challenges and trusted devices, in process.
#[derive(Default)]
pub struct MemoryMfa {
    challenges: DashMap<String, Challenge>,
    /// `user id` -> device token hash -> expiry.
    devices: DashMap<String, HashMap<String, i64>>,
}

impl MemoryMfa {
    fn forget_expired(&self, now: i64) {
        self.challenges.retain(|_, c| c.expires_at > now);
        self.devices.retain(|_, d| {
            d.retain(|_, expires| *expires > now);
            !d.is_empty()
        });
    }
}

#[async_trait]
impl ChallengeStore for MemoryMfa {
    async fn create_challenge(&self, challenge: Challenge) -> Result<(), StoreError> {
        self.challenges.insert(challenge.id.clone(), challenge);
        Ok(())
    }

    async fn attempt(
        &self,
        id: &str,
        code_hash: &str,
        max_attempts: u32,
        now: i64,
    ) -> Result<Attempt, StoreError> {
        // The entry's lock makes compare-and-count one step.
        let (outcome, gone) = match self.challenges.get_mut(id) {
            None => return Ok(Attempt::Unknown),
            Some(mut c) => judge_attempt(&mut c, code_hash, max_attempts, now),
        };
        if gone {
            self.challenges.remove(id);
        }
        Ok(outcome)
    }

    async fn delete_challenge(&self, id: &str) -> Result<(), StoreError> {
        self.challenges.remove(id);
        Ok(())
    }

    async fn sweep(&self, now: i64) {
        self.forget_expired(now);
    }
}

#[async_trait]
impl DeviceStore for MemoryMfa {
    async fn trust_device(
        &self,
        user_id: &str,
        hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.devices
            .entry(user_id.to_owned())
            .or_default()
            .insert(hash.to_owned(), expires_at);
        Ok(())
    }

    async fn is_trusted(&self, user_id: &str, hash: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .devices
            .get(user_id)
            .and_then(|d| d.get(hash).copied())
            .is_some_and(|expires| expires > now))
    }

    async fn forget_devices(&self, user_id: &str) -> Result<(), StoreError> {
        self.devices.remove(user_id);
        Ok(())
    }
}

/// The cut-off lives in the process: the instance's own `Revocations` is the store.
pub struct MemoryRevocations(pub Arc<Revocations>);

#[async_trait]
impl RevocationStore for MemoryRevocations {
    async fn raise_not_before(&self, t: i64) -> Result<i64, StoreError> {
        Ok(self.0.raise(t))
    }

    async fn not_before(&self) -> Result<i64, StoreError> {
        Ok(self.0.not_before())
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
            family: crate::model::Family::Profile,
        }
    }

    #[tokio::test]
    async fn session_lifecycle() {
        let store = MemorySessions::default();
        store.create(session("a", "u", 100)).await.unwrap();
        assert!(store.is_live("u", "a", 50).await.unwrap());
        assert!(
            !store.is_live("v", "a", 50).await.unwrap(),
            "owner must match"
        );
        assert!(
            !store.is_live("u", "a", 100).await.unwrap(),
            "dead at expires_at"
        );
        assert!(store.extend("u", "a", 200, 50).await.unwrap());
        assert!(store.is_live("u", "a", 150).await.unwrap());
        assert!(
            !store.extend("u", "a", 500, 250).await.unwrap(),
            "a dead session is not revived"
        );
        assert!(
            !store.revoke("v", "a").await.unwrap(),
            "only the owner's session is revoked"
        );
        assert!(store.revoke("u", "a").await.unwrap());
        assert!(!store.is_live("u", "a", 10).await.unwrap());
    }

    #[tokio::test]
    async fn revoke_user_keeps_one() {
        let store = MemorySessions::default();
        for (id, user) in [("a", "u"), ("b", "u"), ("c", "v")] {
            store.create(session(id, user, 100)).await.unwrap();
        }
        assert_eq!(store.revoke_user("u", Some("b")).await.unwrap(), 1);
        assert!(!store.is_live("u", "a", 0).await.unwrap());
        assert!(store.is_live("u", "b", 0).await.unwrap());
        assert!(store.is_live("v", "c", 0).await.unwrap());
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
