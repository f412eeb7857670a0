//! The records the gateway reasons about: users, organizations and sessions.
//!
//! These are also the on-disk shape of `users.toml`, so every field keeps its TOML name.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Super,
    Admin,
    User,
}

impl AccountType {
    pub fn parse(s: &str) -> Option<AccountType> {
        match s {
            "super" => Some(AccountType::Super),
            "admin" => Some(AccountType::Admin),
            "user" => Some(AccountType::User),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Super => "super",
            AccountType::Admin => "admin",
            AccountType::User => "user",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Active,
    Disabled,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: Status,
    #[serde(default = "default_tier")]
    pub subscription_tier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_expiry: Option<DateTime<Utc>>,
    /// Free-form fields merged into `profile.institution`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

fn default_tier() -> String {
    "professional".into()
}

impl Org {
    /// An organization lets its members in while it is active and its subscription runs.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.status == Status::Active && self.subscription_expiry.is_none_or(|end| end > now)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    pub account_type: AccountType,
    #[serde(default)]
    pub customer_id: String,
    pub org: String,
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub mfa_enabled: bool,
    /// Free-form fields merged into `profile`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub profile: Map<String, Value>,
}

/// Emails are compared without regard to case or surrounding blanks.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

/// A server-side session: the thing a token's `sessionId` points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the session is dead from this instant on.
    pub expires_at: i64,
    /// The client family that started it, which sets its tokens' lifetime. Sessions stored
    /// before families existed are of the signin family.
    #[serde(default = "signin_family")]
    pub family: Family,
}

fn signin_family() -> Family {
    Family::Profile
}

impl Session {
    pub fn is_live(&self, now: i64) -> bool {
        now < self.expires_at
    }

    /// The one rule every store and cache applies: a session serves a token only for its own
    /// user, and only until it expires.
    pub fn serves(&self, user_id: &str, now: i64) -> bool {
        self.user_id == user_id && self.is_live(now)
    }
}

/// The two client families served from one user store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Seed 000/001 clients: `{token, profile}`.
    Profile,
    /// Seed 003 clients: `{token, user, firm}`.
    UserFirm,
}

/// An email MFA challenge: the code itself is never stored, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: String,
    pub user_id: String,
    pub code_hash: String,
    /// Which response shape the verify step answers with.
    pub family: Family,
    /// Issued under super-mandatory enforcement: a successful verify turns MFA on.
    pub mandatory_super: bool,
    /// Unix seconds.
    pub expires_at: i64,
    pub attempts: u32,
}

/// A login started at an identity provider and waiting for its callback. Kept server-side,
/// under a hash of its `state`; the PKCE verifier and the nonce never leave the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// The configured provider's name.
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    /// Hash of the browser-binding cookie the login was started with.
    pub binding: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// An account at an identity provider, `(issuer, subject)`, linked to one of our users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityLink {
    pub issuer: String,
    pub subject: String,
    /// The user's id.
    pub user: String,
}
