//! Users and organizations (the cache, `store::cache::Cached`, sits in front).

use std::sync::Arc;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisStore, to_json};
use crate::model::{Org, User};
use crate::store::cache::Event;
use crate::store::{StoreError, UserStore};

#[async_trait]
impl UserStore for RedisStore {
    async fn user_id_by_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        self.run(conn.get(self.inner.keys.email(email))).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError> {
        Ok(self
            .get_json::<User>(self.inner.keys.user(id))
            .await?
            .map(Arc::new))
    }

    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError> {
        Ok(self
            .get_json::<Org>(self.inner.keys.org(id))
            .await?
            .map(Arc::new))
    }

    async fn create_user(&self, org: Org, user: User) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.create_user.prepare_invoke();
        call.key(keys.email(&user.email))
            .key(keys.user(&user.id))
            .key(keys.org(&org.id))
            .arg(&user.id)
            .arg(to_json(&user)?)
            .arg(to_json(&org)?);
        match self.run(call.invoke_async::<i64>(&mut conn)).await? {
            1 => Ok(()),
            _ => Err(StoreError::EmailTaken),
        }
    }

    async fn save_user(&self, user: User) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let key = self.inner.keys.user(&user.id);
        self.run(conn.set::<_, _, ()>(key, to_json(&user)?)).await?;
        self.publish(Event::UserChanged(&user.id)).await
    }
}
