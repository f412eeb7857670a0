//! Users and organizations, read through the cache.

use std::sync::Arc;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::cache::Event;
use super::{RedisStore, to_json};
use crate::model::{Org, User};
use crate::store::{StoreError, UserStore};

#[async_trait]
impl UserStore for RedisStore {
    async fn user_by_email(&self, email: &str) -> Result<Option<Arc<User>>, StoreError> {
        let mut conn = self.conn();
        let id: Option<String> = self.run(conn.get(self.inner.keys.email(email))).await?;
        match id {
            Some(id) => self.user_by_id(&id).await,
            None => Ok(None),
        }
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<Arc<User>>, StoreError> {
        let cache = &self.inner.cache;
        if let Some(user) = cache.user(id) {
            return Ok(Some(user));
        }
        let generation = cache.generation();
        let user = self
            .get_json::<User>(self.inner.keys.user(id))
            .await?
            .map(Arc::new);
        if let Some(user) = &user {
            cache.put_user(generation, Arc::clone(user));
        }
        Ok(user)
    }

    async fn org(&self, id: &str) -> Result<Option<Arc<Org>>, StoreError> {
        let cache = &self.inner.cache;
        if let Some(org) = cache.org(id) {
            return Ok(Some(org));
        }
        let generation = cache.generation();
        let org = self
            .get_json::<Org>(self.inner.keys.org(id))
            .await?
            .map(Arc::new);
        if let Some(org) = &org {
            cache.put_org(generation, Arc::clone(org));
        }
        Ok(org)
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
        self.inner.cache.apply(Event::UserChanged(&user.id));
        self.publish(Event::UserChanged(&user.id)).await
    }
}
