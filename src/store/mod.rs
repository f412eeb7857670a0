//! Storage seams: users and organizations, sessions. Memory first; other backends plug in here.

pub mod memory;
pub mod users_file;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{Org, Session, User};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("store backend unavailable: {0}")]
    Unavailable(String),
}

/// Read access to users and their organizations.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Look up by email; the caller passes it already normalized.
    async fn user_by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError>;
    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError>;
    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError>;
}

/// Server-side sessions. A session that is absent or past `expires_at` is dead.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create(&self, session: Session) -> Result<(), StoreError>;
    /// The session if it exists and is live at `now`.
    async fn get(&self, id: &str, now: i64) -> Result<Option<Session>, StoreError>;
    /// Move a live session's expiry; false when the session is already dead.
    async fn extend(&self, id: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;
    /// Revoke one session; false when there was nothing to revoke.
    async fn revoke(&self, id: &str) -> Result<bool, StoreError>;
    /// Revoke every session of a user but `keep`; returns how many went.
    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError>;
    /// Forget dead sessions; called periodically.
    async fn sweep(&self, now: i64);
}
