//! Loading users: `authgate users import` (replace) and the seeding at start (add what is
//! missing), and the generated token secret shared between instances.

use redis::AsyncCommands;

use super::{RedisStore, to_json, unavailable};
use crate::model::User;
use crate::store::StoreError;
use crate::store::cache::Event;
use crate::store::users_file::UsersFile;

impl RedisStore {
    /// Load a users file into Redis (`authgate users import`): organizations, users, the
    /// email index and identity links, replacing records with the same id. Returns (users, organizations).
    pub async fn import(&self, file: &UsersFile) -> Result<(usize, usize), StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        for org in &file.orgs {
            pipe.set(keys.org(&org.id), to_json(org)?).ignore();
        }
        for user in &file.users {
            // A user whose email changed must not keep the old address.
            if let Some(old) = self.get_json::<User>(keys.user(&user.id)).await? {
                if old.email != user.email {
                    pipe.del(keys.email(&old.email)).ignore();
                }
            }
            pipe.set(keys.user(&user.id), to_json(user)?).ignore();
            pipe.set(keys.email(&user.email), &user.id).ignore();
        }
        for link in &file.links {
            pipe.set(keys.identity(&link.issuer, &link.subject), &link.user)
                .ignore();
            pipe.set(keys.user_identity(&link.issuer, &link.user), &link.subject)
                .ignore();
        }
        // Every key above carries the {users} tag, so the transaction stays in one slot.
        pipe.atomic();
        tokio::time::timeout(self.inner.timeout * 20, pipe.query_async::<()>(&mut conn))
            .await
            .map_err(|_| unavailable("timed out importing"))?
            .map_err(unavailable)?;
        self.publish(Event::Everything).await?;
        Ok((file.users.len(), file.orgs.len()))
    }
    /// The token secret every instance uses when none is configured: the first instance's
    /// `candidate` wins and the others adopt it.
    pub async fn shared_secret(&self, candidate: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.conn();
        let key = self.inner.keys.secret();
        let _: bool = self.run(conn.set_nx(&key, hex::encode(candidate))).await?;
        let stored: String = self.run(conn.get(&key)).await?;
        hex::decode(stored).map_err(|e| unavailable(format!("unreadable shared secret: {e}")))
    }

    /// Add the users and organizations of `file` that Redis does not have yet, leaving existing
    /// records (changed through the gateway since) alone. Returns how many users were added.
    pub async fn seed(&self, file: &UsersFile) -> Result<usize, StoreError> {
        let keys = &self.inner.keys;
        let mut conn = self.conn();
        let mut pipe = redis::pipe();
        for org in &file.orgs {
            pipe.set_nx(keys.org(&org.id), to_json(org)?).ignore();
        }
        for user in &file.users {
            pipe.set_nx(keys.email(&user.email), &user.id);
            pipe.set_nx(keys.user(&user.id), to_json(user)?).ignore();
        }
        for link in &file.links {
            pipe.set_nx(keys.identity(&link.issuer, &link.subject), &link.user)
                .ignore();
            pipe.set_nx(keys.user_identity(&link.issuer, &link.user), &link.subject)
                .ignore();
        }
        pipe.atomic();
        let added: Vec<bool> =
            tokio::time::timeout(self.inner.timeout * 20, pipe.query_async(&mut conn))
                .await
                .map_err(|_| unavailable("timed out seeding users"))?
                .map_err(unavailable)?;
        Ok(added.into_iter().filter(|a| *a).count())
    }
}
