//! Key names. `P` is `store.redis_key_prefix`; `{…}` is a Redis Cluster hash tag, so keys that
//! one script touches share a slot.

use std::net::IpAddr;

pub(super) struct Keys {
    pub(super) prefix: String,
}

impl Keys {
    pub(super) fn user(&self, id: &str) -> String {
        format!("{}{{users}}:user:{id}", self.prefix)
    }
    pub(super) fn email(&self, email: &str) -> String {
        format!("{}{{users}}:email:{email}", self.prefix)
    }
    pub(super) fn org(&self, id: &str) -> String {
        format!("{}{{users}}:org:{id}", self.prefix)
    }
    /// An identity-provider account: the key ends in the JSON array `["<issuer>","<subject>"]`,
    /// which no two different pairs share.
    pub(super) fn identity(&self, issuer: &str, subject: &str) -> String {
        let pair = serde_json::to_string(&[issuer, subject]).unwrap_or_default();
        format!("{}{{users}}:idp:{pair}", self.prefix)
    }
    /// The account a user is linked to at an issuer: the key ends in `["<issuer>","<user>"]`.
    pub(super) fn user_identity(&self, issuer: &str, user: &str) -> String {
        let pair = serde_json::to_string(&[issuer, user]).unwrap_or_default();
        format!("{}{{users}}:idpuser:{pair}", self.prefix)
    }
    /// A started single sign-on login, by the hash of its `state`.
    pub(super) fn login(&self, state_hash: &str) -> String {
        format!("{}sso:{{{state_hash}}}", self.prefix)
    }
    pub(super) fn session_prefix(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:s:", self.prefix)
    }
    pub(super) fn session(&self, user: &str, id: &str) -> String {
        format!("{}{id}", self.session_prefix(user))
    }
    /// Which user a session belongs to, by session id alone (the admin API revokes by id). Its
    /// own hash tag: written next to the session, never inside the session's scripts.
    pub(super) fn session_owner(&self, id: &str) -> String {
        format!("{}sid:{{{id}}}", self.prefix)
    }
    pub(super) fn user_sessions(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:sessions", self.prefix)
    }
    pub(super) fn device_prefix(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:dev:", self.prefix)
    }
    pub(super) fn devices(&self, user: &str) -> String {
        format!("{}{{u:{user}}}:devices", self.prefix)
    }
    pub(super) fn challenge(&self, id: &str) -> String {
        format!("{}mfa:{{{id}}}", self.prefix)
    }
    pub(super) fn limit(&self, key: &str) -> String {
        format!("{}rl:{key}", self.prefix)
    }
    pub(super) fn failures(&self, account: &str, client: IpAddr) -> [String; 2] {
        let account_key = format!("{}af:{{{account}}}", self.prefix);
        [format!("{account_key}:{client}"), account_key]
    }
    pub(super) fn secret(&self) -> String {
        format!("{}secret", self.prefix)
    }
    /// The `issuedBefore` cut-off, Unix seconds.
    pub(super) fn not_before(&self) -> String {
        format!("{}not_before", self.prefix)
    }
    pub(super) fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
}
