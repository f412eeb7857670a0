//! POST /api/auth/register: a new user, as the admin of a new organization on a trial.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Map;

use super::{Reply, Request, parse_json, validate_password};
use crate::app::App;
use crate::auth::start_session;
use crate::error::GatewayError;
use crate::live::Live;
use crate::model::{AccountType, Org, Status, User, normalize_email};
use crate::views::{self, Family};

/// Only these fields are read: a body cannot choose its role, tier or status.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Registration {
    email: String,
    password: String,
    first_name: String,
    last_name: String,
    #[serde(default)]
    firm_name: Option<String>,
}

const MAX_NAME_CHARS: usize = 100;

pub async fn register(app: &App, live: &Live, req: Request<'_>) -> Result<Reply, GatewayError> {
    if !live.config.register.enabled {
        return Err(GatewayError::RegistrationClosed);
    }
    let r: Registration = parse_json(req.body)?;
    let email = normalize_email(&r.email);
    if !is_plausible_email(&email) {
        return Err(GatewayError::BadRequest(
            "email is not a valid email address".into(),
        ));
    }
    let first_name = name("firstName", &r.first_name)?;
    let last_name = name("lastName", &r.last_name)?;
    let firm_name = match r.firm_name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => name("firmName", n)?,
        _ => format!("{first_name} {last_name}"),
    };
    validate_password(live, "password", &r.password)?;
    let password_hash = app.passwords.hash(&r.password).await?;

    let trial_end = DateTime::<Utc>::from_timestamp(req.now, 0)
        .unwrap_or_default()
        .checked_add_signed(
            chrono::Duration::from_std(live.config.register.trial).unwrap_or_default(),
        );
    let org = Org {
        id: uuid::Uuid::new_v4().to_string(),
        name: firm_name,
        status: Status::Active,
        subscription_tier: "trial".into(),
        subscription_expiry: trial_end,
        extra: Map::new(),
    };
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        password_hash,
        first_name,
        last_name,
        account_type: AccountType::Admin,
        customer_id: String::new(),
        org: org.id.clone(),
        status: Status::Active,
        mfa_enabled: false,
        profile: Map::new(),
    };
    app.users
        .create_user(Some(org.clone()), user.clone())
        .await?;
    let token = start_session(app, live, &user, Family::UserFirm, req.now).await?;
    tracing::info!(user = %user.id, org = %org.id, client = %req.client_ip, "registered");
    Ok(Reply::ok(views::signed_in(
        Family::UserFirm,
        &token,
        &user,
        Some(&org),
    ))
    .signing_in(&user.id))
}

fn name(field: &str, value: &str) -> Result<String, GatewayError> {
    let value = value.trim();
    if value.is_empty()
        || value.chars().count() > MAX_NAME_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(GatewayError::BadRequest(format!(
            "{field} must be 1 to {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(value.to_owned())
}

fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(is_plausible_email("john@example.com"));
        for bad in [
            "",
            "john",
            "john@",
            "@example.com",
            "john@example",
            "a b@example.com",
            "a@b@c.com",
            "a@.com",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }
}
