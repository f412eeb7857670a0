//! Which user a provider's account signs in as: the user it is linked to, or, the first time,
//! the user with its verified email (then linked), or a new user when the provider
//! auto-provisions.

use std::sync::Arc;

use rand::RngCore;
use serde_json::Map;

use super::SsoError;
use super::id_token::IdClaims;
use crate::config::ProviderSettings;
use crate::error::GatewayError;
use crate::model::{IdentityLink, Status, User, normalize_email};
use crate::password::Passwords;
use crate::store::{Linked, StoreError, UserStore};

/// An email the provider vouches for, split where it can be trusted: exactly one `@`, both
/// sides non-empty, nothing blank or invisible. Returns (normalised email, domain).
pub fn checked_email(email: &str) -> Option<(String, String)> {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || domain.contains('@')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || local.contains('"')
    {
        return None;
    }
    let email = normalize_email(email);
    let domain = domain.to_ascii_lowercase();
    Some((email, domain))
}

/// The user `claims` from `provider` signs in as.
pub async fn user_for(
    users: &dyn UserStore,
    passwords: &Passwords,
    provider: &ProviderSettings,
    claims: &IdClaims,
) -> Result<Arc<User>, GatewayError> {
    if let Some(id) = users
        .user_id_by_identity(&provider.issuer, &claims.sub)
        .await?
    {
        // Linked: the link decides, whatever the email says now.
        return users
            .user_by_id(&id)
            .await?
            .ok_or_else(|| SsoError::NoAccount.into());
    }

    let email = claims
        .email
        .as_deref()
        .ok_or(SsoError::Failed("the ID token carries no email to link by"))?;
    if !claims.email_verified() {
        return Err(SsoError::Failed("email not verified by the provider").into());
    }
    let (email, domain) = checked_email(email).ok_or(SsoError::Failed("email address invalid"))?;
    if let Some(allowed) = &provider.email_domains {
        if !allowed.contains(&domain) {
            return Err(SsoError::Failed("email domain not allowed").into());
        }
    }

    let user = match users.user_by_email(&email).await? {
        Some(user) => user,
        None => match &provider.auto_provision {
            Some(_) => provision(users, passwords, provider, claims, email).await?,
            None => return Err(SsoError::NoAccount.into()),
        },
    };
    let link = IdentityLink {
        issuer: provider.issuer.clone(),
        subject: claims.sub.clone(),
        user: user.id.clone(),
    };
    match users.link_identity(link).await? {
        Linked::Owner(owner) if owner == user.id => {
            tracing::info!(provider = %provider.name, user = %user.id, "identity linked by verified email");
            Ok(user)
        }
        // Linked meanwhile, by a concurrent login: the link decides.
        Linked::Owner(owner) => users
            .user_by_id(&owner)
            .await?
            .ok_or_else(|| SsoError::NoAccount.into()),
        Linked::Conflict => {
            tracing::warn!(provider = %provider.name, user = %user.id, "refused a second account at the same provider for one user");
            Err(SsoError::Failed("this user is linked to another account at the provider").into())
        }
    }
}

/// A new user for an identity the provider vouches for, in the configured organization. Its
/// password is random and never told to anyone: it signs in through the provider.
async fn provision(
    users: &dyn UserStore,
    passwords: &Passwords,
    provider: &ProviderSettings,
    claims: &IdClaims,
    email: String,
) -> Result<Arc<User>, GatewayError> {
    let Some(rule) = &provider.auto_provision else {
        return Err(SsoError::NoAccount.into());
    };
    if users.org(&rule.org).await?.is_none() {
        tracing::error!(provider = %provider.name, org = %rule.org, "auto_provision names an organization the store does not have");
        return Err(SsoError::NoAccount.into());
    }
    let mut unusable = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut unusable);
    let password_hash = passwords.hash(&hex::encode(unusable)).await?;
    let (first_name, last_name) = names(claims);
    let user = User {
        id: crate::mfa::new_challenge_id(),
        email,
        password_hash,
        first_name,
        last_name,
        account_type: rule.account_type,
        customer_id: String::new(),
        org: rule.org.clone(),
        status: Status::Active,
        mfa_enabled: false,
        profile: Map::new(),
    };
    match users.create_user(None, user.clone()).await {
        Ok(()) => {
            tracing::info!(provider = %provider.name, user = %user.id, org = %rule.org, "user provisioned by single sign-on");
            Ok(Arc::new(user))
        }
        // Provisioned meanwhile by a concurrent login with the same email.
        Err(StoreError::EmailTaken) => users
            .user_by_email(&user.email)
            .await?
            .ok_or_else(|| SsoError::NoAccount.into()),
        Err(e) => Err(e.into()),
    }
}

/// First and last name: `given_name` and `family_name`, else `name` split at its last space.
fn names(claims: &IdClaims) -> (String, String) {
    let clip = |s: &str| s.trim().chars().take(100).collect::<String>();
    match (&claims.given_name, &claims.family_name) {
        (Some(g), Some(f)) => (clip(g), clip(f)),
        _ => match claims.name.as_deref().map(str::trim) {
            Some(full) => match full.rsplit_once(' ') {
                Some((first, last)) => (clip(first), clip(last)),
                None => (clip(full), String::new()),
            },
            None => (String::new(), String::new()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_with_one_at_only() {
        assert_eq!(
            checked_email("John.Doe@MyDomain.com"),
            Some(("john.doe@mydomain.com".into(), "mydomain.com".into()))
        );
        for bad in [
            "john.doe@mydomain.com@evil.test",
            "\"john.doe@mydomain.com\"@evil.test",
            "john doe@mydomain.com",
            "john.doe@mydomain.com\n",
            "@mydomain.com",
            "john@",
            "john",
            "john@.com",
            "john@mydomain.com.",
        ] {
            assert_eq!(checked_email(bad), None, "{bad:?}");
        }
        // Only ASCII is folded: a Kelvin sign or a long s never becomes k or s.
        assert_eq!(
            checked_email("\u{212A}im@x.com").map(|e| e.0),
            Some("\u{212A}im@x.com".into())
        );
    }
}
