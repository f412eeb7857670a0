//! Storage seams: users and organizations, sessions, rate-limit counters. Memory first; Redis
//! shares all of them between gateway instances.

pub mod cache;
pub mod memory;
pub mod redis;
pub mod users_file;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::{Challenge, IdentityLink, Org, PendingLogin, Session, User};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not answer (down, too slow, or its data unreadable), and why.
    #[error("{context}: {source}")]
    Unavailable {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `create_user` found the email taken.
    #[error("email already registered")]
    EmailTaken,
}

impl StoreError {
    pub fn unavailable(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> StoreError {
        StoreError::Unavailable {
            context,
            source: source.into(),
        }
    }
}

/// Read access to users and their organizations.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Look up by email; the caller passes it already normalized.
    async fn user_by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        match self.user_id_by_email(email).await? {
            Some(id) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }
    /// The id of the user with this (normalized) email.
    async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError>;
    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError>;
    /// Add a user, with their new organization if `org` is given (else the user joins an
    /// existing one); `EmailTaken` when it is. Durable before it returns.
    async fn create_user(&self, org: Option<Org>, user: User) -> Result<(), StoreError>;
    /// Replace the record of an existing user (password, MFA flag). Durable before it returns.
    async fn save_user(&self, user: User) -> Result<(), StoreError>;
    /// The user an identity-provider account is linked to.
    async fn user_id_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Link an identity-provider account to a user, durably, in one atomic step. An account
    /// already linked keeps its link (`Owner` names its user, whoever asked); a user already
    /// linked to another account at the same issuer gets no second one (`Conflict`).
    async fn link_identity(&self, link: IdentityLink) -> Result<Linked, StoreError>;
}

/// What `UserStore::link_identity` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linked {
    /// The account is linked to this user (just now, or before).
    Owner(String),
    /// The user is already linked to another account at this issuer.
    Conflict,
}

/// Server-side sessions, always addressed by owner and id (both are in the token). A session
/// that is absent or past `expires_at` is dead.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create(&self, session: Session) -> Result<(), StoreError>;
    /// Whether the session exists, belongs to `user_id` and is live at `now`.
    async fn is_live(&self, user_id: &str, id: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .session(user_id, id)
            .await?
            .is_some_and(|s| s.serves(user_id, now)))
    }
    /// The session record, whatever its state.
    async fn session(&self, user_id: &str, id: &str) -> Result<Option<Session>, StoreError>;
    /// The user whose session this is, while it is live at `now`: how a session known only by
    /// its id (the admin API) is found.
    async fn owner(&self, id: &str, now: i64) -> Result<Option<String>, StoreError>;
    /// Move a live session's expiry; false when the session is already dead.
    async fn extend(
        &self,
        user_id: &str,
        id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Revoke one session; false when there was nothing to revoke.
    async fn revoke(&self, user_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Revoke every session of a user but `keep`; returns how many went.
    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError>;
    /// Forget dead sessions; called periodically (a no-op where the backend expires keys).
    async fn sweep(&self, now: i64);
}

/// What one guess at an MFA code came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// No such challenge: never issued, expired, or already used.
    Unknown,
    /// Too many wrong codes: the challenge is dead, even for the right code.
    Exhausted,
    Wrong {
        remaining: u32,
    },
    /// The right code; the challenge is used up.
    Passed(Challenge),
}

/// The rule for one guess, which every backend applies (Redis in `scripts/attempt.lua`, in
/// one atomic step): an expired challenge is unknown; once `max_attempts` wrong codes were
/// counted it is dead even for the right code; a wrong code is counted; the right code passes
/// and uses the challenge up. Returns the outcome and whether the challenge is now gone.
pub fn judge_attempt(
    challenge: &mut Challenge,
    code_hash: &str,
    max_attempts: u32,
    now: i64,
) -> (Attempt, bool) {
    if challenge.expires_at <= now {
        return (Attempt::Unknown, true);
    }
    if challenge.attempts >= max_attempts {
        return (Attempt::Exhausted, false);
    }
    if !crate::mfa::same_hash(&challenge.code_hash, code_hash) {
        challenge.attempts += 1;
        let remaining = max_attempts - challenge.attempts;
        return (Attempt::Wrong { remaining }, false);
    }
    (Attempt::Passed(challenge.clone()), true)
}

/// Email MFA challenges.
#[async_trait]
pub trait ChallengeStore: Send + Sync {
    async fn create_challenge(&self, challenge: Challenge) -> Result<(), StoreError>;
    /// Compare `code_hash` and count a wrong guess in one atomic step, so concurrent guesses
    /// are all counted; the right code consumes the challenge.
    async fn attempt(
        &self,
        id: &str,
        code_hash: &str,
        max_attempts: u32,
        now: i64,
    ) -> Result<Attempt, StoreError>;
    async fn delete_challenge(&self, id: &str) -> Result<(), StoreError>;
    /// Forget expired challenges and devices; a no-op where the backend expires keys.
    async fn sweep(&self, _now: i64) {}
}

/// What presenting a login's `state` at the callback came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The login, now used up.
    Taken(PendingLogin),
    /// The login exists but was started by another browser; it stays for its own browser.
    OtherBrowser,
    /// Never started, expired, or already used.
    Unknown,
}

/// Logins started at an identity provider, by the hash of their `state`.
#[async_trait]
pub trait LoginStore: Send + Sync {
    async fn put_login(&self, key: &str, login: PendingLogin) -> Result<(), StoreError>;
    /// Take the login if `binding` is the one it was started with: at most one caller ever
    /// gets `Taken` for a key.
    async fn take_login(&self, key: &str, binding: &str, now: i64) -> Result<Claim, StoreError>;
    /// Forget expired logins; a no-op where the backend expires keys.
    async fn sweep(&self, _now: i64) {}
}

/// Devices that passed MFA, by the hash of their device token.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    async fn trust_device(
        &self,
        user_id: &str,
        hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    async fn is_trusted(&self, user_id: &str, hash: &str, now: i64) -> Result<bool, StoreError>;
    async fn forget_devices(&self, user_id: &str) -> Result<(), StoreError>;
}

/// The `issuedBefore` cut-off (`revocation::Revocations`) where every instance finds it: a token
/// issued before it is refused. It only ever rises.
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Raise the cut-off to `t` unless it is already later, and tell every instance; returns the
    /// cut-off now in force.
    async fn raise_not_before(&self, t: i64) -> Result<i64, StoreError>;
    /// The cut-off in force (0: none).
    async fn not_before(&self) -> Result<i64, StoreError>;
}

/// Counters shared by every gateway instance: one hit on `key`, allowed `per_minute` times a
/// minute. `Ok(None)` lets the request through; `Ok(Some(wait))` refuses it for `wait`.
#[async_trait]
pub trait LimitStore: Send + Sync {
    async fn hit(&self, key: &str, per_minute: NonZeroU32) -> Result<Option<Duration>, StoreError>;
    /// Count one sign-in attempt in the account's bucket and in the bucket of the account from
    /// `client`, unless either already holds its limit (`[per account, per client]`) in the
    /// current window; then nothing is counted and the time left in that window comes back. A
    /// bucket's window starts with its first attempt.
    async fn reserve(
        &self,
        account: &str,
        client: IpAddr,
        limits: [u32; 2],
        window: Duration,
    ) -> Result<Option<Duration>, StoreError>;
    /// Forget the failures of the account and of this address on it.
    async fn clear_failures(&self, account: &str, client: IpAddr) -> Result<(), StoreError>;
}

/// Whether the backend can serve requests right now, for `/readyz`.
#[async_trait]
pub trait StoreHealth: Send + Sync {
    fn backend(&self) -> &'static str;
    async fn check(&self) -> Result<(), StoreError>;
}

/// Everything the gateway needs from its storage backend.
#[derive(Clone)]
pub struct Stores {
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub challenges: Arc<dyn ChallengeStore>,
    pub devices: Arc<dyn DeviceStore>,
    pub logins: Arc<dyn LoginStore>,
    /// Where the `issuedBefore` cut-off is kept and announced.
    pub revocation_store: Arc<dyn RevocationStore>,
    /// The cut-off this instance applies, kept up to date with `revocation_store`.
    pub revocations: Arc<crate::revocation::Revocations>,
    /// `None` when limits are kept in process only.
    pub limits: Option<Arc<dyn LimitStore>>,
    pub health: Arc<dyn StoreHealth>,
    /// The memory store, which can re-read its users file.
    pub users_file: Option<Arc<memory::MemoryUsers>>,
    /// Redis's change listener, to run as a background service.
    pub listener: Option<redis::Listener>,
}
