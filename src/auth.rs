//! Who is calling: a token turned into a live caller, a password turned into a new session.

use std::sync::Arc;

use chrono::DateTime;
use rand::RngCore;

use crate::error::GatewayError;
use crate::live::Live;
use crate::model::{Org, Session, Status, User, normalize_email};
use crate::proxy::Gateway;
use crate::token::Claims;

/// A caller whose token, session, account and organization all check out.
pub struct Caller {
    pub claims: Claims,
    pub user: Arc<User>,
    pub org: Option<Arc<Org>>,
}

/// Token -> signature and expiry -> live session -> account and organization in good standing.
/// Disabling an account or an organization therefore takes effect on existing sessions at once.
pub async fn authenticate(
    gw: &Gateway,
    live: &Live,
    token: &str,
    now: i64,
) -> Result<Caller, GatewayError> {
    let claims = live.keys.verify(token, now)?;
    let session = gw
        .sessions
        .get(&claims.user_id, &claims.session_id, now)
        .await?;
    if session.is_none() {
        return Err(GatewayError::SessionExpired);
    }
    let user = gw
        .users
        .user_by_id(&claims.user_id)
        .await?
        .ok_or(GatewayError::SessionExpired)?;
    let org = standing(gw, &user, now).await?;
    Ok(Caller { claims, user, org })
}

/// An account may act when it is active and its organization is active and paid up.
async fn standing(gw: &Gateway, user: &User, now: i64) -> Result<Option<Arc<Org>>, GatewayError> {
    if user.status == Status::Disabled {
        return Err(GatewayError::AccountDisabled);
    }
    let org = gw.users.org(&user.org).await?;
    if let Some(org) = &org {
        let now = DateTime::from_timestamp(now, 0).unwrap_or_default();
        if !org.is_usable(now) {
            return Err(GatewayError::FirmDisabled);
        }
    }
    Ok(org)
}

/// Check an email and password. An unknown email and a wrong password fail identically and cost
/// one password verification each; account status is revealed only to the right password.
pub async fn check_password(
    gw: &Gateway,
    email: &str,
    password: &str,
    now: i64,
) -> Result<(Arc<User>, Option<Arc<Org>>), GatewayError> {
    let user = gw.users.user_by_email(&normalize_email(email)).await?;
    let hash = user.as_ref().map(|u| u.password_hash.as_str());
    let matches = gw.passwords.verify(password, hash).await?;
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(GatewayError::InvalidCredentials),
    };
    let org = standing(gw, &user, now).await?;
    Ok((user, org))
}

/// Where a correct password leads. Email MFA (a challenge before any token) plugs in here.
pub enum Admission {
    SignedIn { token: String },
}

/// Decide what a user who just proved their password gets, and open the session if it is a
/// token.
pub async fn admit(
    gw: &Gateway,
    live: &Live,
    user: &User,
    now: i64,
) -> Result<Admission, GatewayError> {
    let token = start_session(gw, live, user, now).await?;
    Ok(Admission::SignedIn { token })
}

/// Open a server-side session for `user` and sign its first token.
pub async fn start_session(
    gw: &Gateway,
    live: &Live,
    user: &User,
    now: i64,
) -> Result<String, GatewayError> {
    let session = Session {
        id: new_session_id(),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: now.saturating_add(live.validity_secs()),
    };
    gw.sessions.create(session.clone()).await?;
    issue_token(live, user, &session.id, now)
}

pub fn issue_token(
    live: &Live,
    user: &User,
    session_id: &str,
    now: i64,
) -> Result<String, GatewayError> {
    live.keys.issue(&Claims {
        user_id: user.id.clone(),
        email: user.email.clone(),
        customer_id: user.customer_id.clone(),
        account_type: user.account_type,
        session_id: session_id.to_owned(),
        iat: now,
        exp: now.saturating_add(live.validity_secs()),
    })
}

/// 128 bits from the OS CSPRNG, hex encoded.
fn new_session_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
