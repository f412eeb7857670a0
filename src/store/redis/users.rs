//! Users and organizations (the cache, `store::cache::Cached`, sits in front).

use std::sync::Arc;

use async_trait::async_trait;
use redis::AsyncCommands;

use super::{RedisStore, to_json};
use crate::model::{IdentityLink, Org, User};
use crate::store::cache::Event;
use crate::store::{Linked, StoreError, UserStore};

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

    async fn create_user(&self, org: Option<Org>, user: User) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.create_user.prepare_invoke();
        call.key(keys.email(&user.email))
            .key(keys.user(&user.id))
            .arg(&user.id)
            .arg(to_json(&user)?);
        if let Some(org) = &org {
            call.key(keys.org(&org.id)).arg(to_json(org)?);
        }
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

    async fn user_id_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        self.identity_owner(issuer, subject).await
    }

    async fn link_identity(&self, link: IdentityLink) -> Result<Linked, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut call = self.inner.scripts.link_identity.prepare_invoke();
        call.key(keys.identity(&link.issuer, &link.subject))
            .key(keys.user_identity(&link.issuer, &link.user))
            .arg(&link.user)
            .arg(&link.subject);
        let (outcome, user): (i64, String) = self.run(call.invoke_async(&mut conn)).await?;
        Ok(match outcome {
            1 => Linked::Owner(user),
            _ => Linked::Conflict,
        })
    }
}

impl RedisStore {
    pub(super) async fn identity_owner(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn();
        self.run(conn.get(self.inner.keys.identity(issuer, subject)))
            .await
    }
}
