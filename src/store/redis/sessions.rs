//! Sessions: one key per session, indexed under its user.

use async_trait::async_trait;

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
        self.run(call.invoke_async::<i64>(&mut conn))
            .await
            .map(drop)
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
        self.publish(Event::UserSessionsRevoked(user_id)).await?;
        Ok(usize::try_from(removed).unwrap_or(0))
    }

    async fn sweep(&self, _now: i64) {
        // Redis expires sessions by itself (EXAT on every session key).
    }
}
