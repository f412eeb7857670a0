//! Sessions: one key per session, indexed under its user, and the owner of each session by id.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisStore, to_json};
use crate::model::Session;
use crate::store::cache::Event;
use crate::store::{SessionStore, StoreError};

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
        self.run(call.invoke_async::<i64>(&mut conn)).await?;
        // In another hash slot than the session's keys, so a command of its own after the
        // script (a cluster script must keep to one slot).
        self.set_owner(&session.user_id, &session.id, session.expires_at)
            .await
    }

    async fn session(&self, user_id: &str, id: &str) -> Result<Option<Session>, StoreError> {
        self.get_json::<Session>(self.inner.keys.session(user_id, id))
            .await
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
        if extended != 1 {
            return Ok(false);
        }
        // The owner index expires with the session (and is written again if it was lost).
        self.set_owner(user_id, id, expires_at).await?;
        Ok(true)
    }

    async fn owner(&self, id: &str, _now: i64) -> Result<Option<String>, StoreError> {
        // The index expires with the session (`EXAT`), so a key found belongs to a live one.
        let mut conn = self.conn();
        self.run(conn.get(self.inner.keys.session_owner(id))).await
    }

    async fn revoke(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.revoke_session.prepare_invoke();
        call.key(keys.session(user_id, id))
            .key(keys.user_sessions(user_id))
            .arg(id);
        let removed: i64 = self.run(call.invoke_async(&mut conn)).await?;
        self.publish(Event::SessionRevoked(id)).await?;
        self.forget_owner(user_id, id).await?;
        Ok(removed > 0)
    }

    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.revoke_user.prepare_invoke();
        call.key(keys.user_sessions(user_id))
            .arg(keys.session_prefix(user_id))
            .arg(keep.unwrap_or(""));
        let removed: Vec<String> = self.run(call.invoke_async(&mut conn)).await?;
        self.publish(Event::UserSessionsRevoked(user_id)).await?;
        // Each index key is in a slot of its own: one command each, all in flight at once on
        // the multiplexed connection.
        futures_util::future::try_join_all(removed.iter().map(|id| self.forget_owner(user_id, id)))
            .await?;
        Ok(removed.len())
    }

    async fn sweep(&self, _now: i64) {
        // Redis expires sessions by itself (EXAT on every session key).
    }
}

impl RedisStore {
    /// `P sid:{<session>}` -> user, expiring with the session.
    async fn set_owner(&self, user_id: &str, id: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let cmd = redis::cmd("SET")
            .arg(self.inner.keys.session_owner(id))
            .arg(user_id)
            .arg("EXAT")
            .arg(expires_at.max(1))
            .to_owned();
        self.run(cmd.query_async::<()>(&mut conn)).await
    }

    /// Remove the owner index of a session, only if it names `user_id`: revoking in another
    /// user's name must not touch the real owner's index.
    async fn forget_owner(&self, user_id: &str, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let mut call = self.inner.scripts.delete_if.prepare_invoke();
        call.key(self.inner.keys.session_owner(id)).arg(user_id);
        self.run(call.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
    }
}
