//! Single sign-on logins between start and callback, so that any instance can finish a login
//! another one started.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisStore, to_json};
use crate::model::PendingLogin;
use crate::store::{Claim, LoginStore, StoreError};

#[async_trait]
impl LoginStore for RedisStore {
    async fn put_login(&self, key: &str, login: PendingLogin) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let expires_at = u64::try_from(login.expires_at).unwrap_or(0);
        let cmd = redis::cmd("SET")
            .arg(self.inner.keys.login(key))
            .arg(to_json(&login)?)
            .arg("EXAT")
            .arg(expires_at)
            .to_owned();
        self.run(cmd.query_async::<()>(&mut conn)).await
    }

    async fn take_login(&self, key: &str, binding: &str, now: i64) -> Result<Claim, StoreError> {
        let key = self.inner.keys.login(key);
        let Some(login) = self.get_json::<PendingLogin>(key.clone()).await? else {
            return Ok(Claim::Unknown);
        };
        if login.expires_at <= now {
            return Ok(Claim::Unknown);
        }
        if !crate::mfa::same_hash(&login.binding, binding) {
            // Left in place: the browser that started it can still finish.
            return Ok(Claim::OtherBrowser);
        }
        // Of callbacks racing with the same state, only the one whose DEL removed the key wins.
        let mut conn = self.conn();
        let removed: i64 = self.run(conn.del(&key)).await?;
        Ok(if removed == 1 {
            Claim::Taken(login)
        } else {
            Claim::Unknown
        })
    }
}
