//! MFA challenges and trusted devices.

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisStore, to_json, unavailable};
use crate::model::Challenge;
use crate::store::{Attempt, ChallengeStore, DeviceStore, StoreError};

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
        self.run(call.invoke_async::<Vec<String>>(&mut conn))
            .await
            .map(drop)
    }
}
