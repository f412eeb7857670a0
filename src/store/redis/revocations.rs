//! The `issuedBefore` cut-off: one key, only ever raised, announced on the events channel so
//! every instance applies it at once (and read again by each instance's listener every second,
//! so a lost announcement still takes effect within a second).

use async_trait::async_trait;

use super::{RedisStore, unavailable};
use crate::store::cache::Event;
use crate::store::{RevocationStore, StoreError};

#[async_trait]
impl RevocationStore for RedisStore {
    async fn raise_not_before(&self, t: i64) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let mut call = self.inner.scripts.raise.prepare_invoke();
        call.key(self.inner.keys.not_before()).arg(t);
        let in_force: i64 = self.run(call.invoke_async(&mut conn)).await?;
        self.publish(Event::NotBefore(in_force)).await?;
        Ok(in_force)
    }

    async fn not_before(&self) -> Result<i64, StoreError> {
        self.read_not_before().await
    }
}

impl RedisStore {
    /// GET the cut-off, even while Redis is marked down (the listener reads it to come back up).
    /// A value that is not a number counts as none (and is replaced by the next raise): it must
    /// not make Redis look down.
    pub(super) async fn read_not_before(&self) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let mut get = redis::cmd("GET");
        get.arg(self.inner.keys.not_before());
        let read = get.query_async::<Option<String>>(&mut conn);
        let held = match tokio::time::timeout(self.inner.timeout, read).await {
            Ok(reply) => reply.map_err(unavailable)?,
            Err(_) => return Err(unavailable("timed out")),
        };
        Ok(match held.map(|text| text.trim().parse::<i64>()) {
            None => 0,
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                tracing::warn!("ignoring the unreadable issuedBefore cut-off in redis: {e}");
                0
            }
        })
    }
}
