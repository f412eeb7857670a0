//! Shared rate limits and failed sign-in counts, decided by Lua scripts on Redis's clock.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::RedisStore;
use crate::store::{LimitStore, StoreError};

#[async_trait]
impl LimitStore for RedisStore {
    async fn hit(&self, key: &str, per_minute: NonZeroU32) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.conn();
        let emission_ms = (60_000 / u64::from(per_minute.get())).max(1);
        let mut call = self.inner.scripts.rate_limit.prepare_invoke();
        call.key(self.inner.keys.limit(key))
            .arg(emission_ms)
            .arg(per_minute.get());
        let wait_ms: i64 = self.run(call.invoke_async(&mut conn)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs())))
    }

    async fn reserve(
        &self,
        account: &str,
        client: IpAddr,
        limits: [u32; 2],
        window: Duration,
    ) -> Result<Option<Duration>, StoreError> {
        let [client_key, account_key] = self.inner.keys.failures(account, client);
        let mut conn = self.conn();
        let mut call = self.inner.scripts.reserve_attempt.prepare_invoke();
        call.key(account_key)
            .key(client_key)
            .arg(limits[0])
            .arg(limits[1])
            .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1));
        let wait_ms: i64 = self.run(call.invoke_async(&mut conn)).await?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms.unsigned_abs())))
    }

    async fn clear_failures(&self, account: &str, client: IpAddr) -> Result<(), StoreError> {
        let keys = self.inner.keys.failures(account, client);
        let mut conn = self.conn();
        self.run(conn.del::<_, ()>(&keys)).await
    }
}
