//! Who is calling: a token turned into a live caller, a password turned into a new session.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::DateTime;
use rand::RngCore;

use crate::app::App;
use crate::error::GatewayError;
use crate::live::Live;
use crate::mfa;
use crate::model::{AccountType, Challenge, Family, Org, Session, Status, User, normalize_email};
use crate::token::Claims;
use crate::token::jwt::TokenError;
use crate::token::jwt::Verified;

/// A caller whose token, session, account and organization all check out.
pub struct Caller {
    /// The token's claims brought up to date with the user record: identity headers and route
    /// decisions follow the account as it is now, not as it was when the token was issued.
    pub token: Arc<Verified>,
    pub user: Arc<User>,
    pub org: Option<Arc<Org>>,
}

/// Token -> signature and expiry -> issued after the cut-off -> live session -> account and
/// organization in good standing. Disabling an account or an organization therefore takes
/// effect on existing sessions at once.
pub async fn authenticate(
    app: &App,
    live: &Live,
    token: &str,
    now: i64,
) -> Result<Caller, GatewayError> {
    let verified = match live.keys.verify(token, now) {
        Ok(v) => v,
        // A token that ran out at its session's absolute cap: the session is over, and no
        // refresh can bring it back, so say so rather than "jwt expired".
        Err(TokenError::Expired)
            if live
                .keys
                .signed_claims(token)
                .is_some_and(|c| live.ended_by_cap(c.session_start, c.exp)) =>
        {
            return Err(GatewayError::SessionExpired);
        }
        Err(e) => return Err(e.into()),
    };
    let claims = &verified.claims;
    // An admin's `issuedBefore` revocation: one atomic load.
    if !app.revocations.admits(claims.iat) {
        return Err(GatewayError::SessionExpired);
    }
    let session = app
        .sessions
        .is_live(&claims.user_id, &claims.session_id, now)
        .await?;
    if !session {
        return Err(GatewayError::SessionExpired);
    }
    let user = app
        .users
        .user_by_id(&claims.user_id)
        .await?
        .ok_or(GatewayError::SessionExpired)?;
    let org = standing(app, &user, now).await?;
    Ok(Caller {
        token: verified.as_of(&user),
        user,
        org,
    })
}

/// An account may act when it is active and its organization is active and paid up.
pub async fn standing(app: &App, user: &User, now: i64) -> Result<Option<Arc<Org>>, GatewayError> {
    if user.status == Status::Disabled {
        return Err(GatewayError::AccountDisabled);
    }
    let org = app.users.org(&user.org).await?;
    if let Some(org) = &org {
        let now = DateTime::from_timestamp(now, 0).unwrap_or_default();
        if !org.is_usable(now) {
            return Err(GatewayError::FirmDisabled);
        }
    }
    Ok(org)
}

/// A correct email and password.
pub struct Credentials {
    pub user: Arc<User>,
    pub org: Option<Arc<Org>>,
    /// The request presented a device token this user trusted after passing MFA.
    pub trusted_device: bool,
}

/// Check an email and password, from `client`, with the device token the request presented.
///
/// - An unknown email and a wrong password fail identically: same answer, one password
///   verification each, and no sooner than the slowest kind of stored hash would fail.
/// - Attempts count against the account (and the account from this address), for unknown
///   emails too, and a success clears them; a locked account is refused with 429 before any
///   hash is computed. A request with the account's trusted-device token is exempt, so the
///   owner cannot be locked out.
/// - Account status is revealed only to the right password.
/// - A right password under bcrypt, or under other argon2 parameters, is rehashed with
///   argon2id.
pub async fn check_password(
    app: &App,
    live: &Live,
    email: &str,
    password: &str,
    device_token: Option<&str>,
    client: IpAddr,
    now: i64,
) -> Result<Credentials, GatewayError> {
    let email = normalize_email(email);
    let user = app.users.user_by_email(&email).await?;
    let trusted_device = match (&user, device_token.filter(|t| !t.is_empty())) {
        (Some(user), Some(token)) => {
            app.devices
                .is_trusted(&user.id, &mfa::device_hash(token), now)
                .await?
        }
        _ => false,
    };
    if !trusted_device {
        live.failures.begin(&email, client).await?;
    }
    let hash = user.as_ref().map(|u| u.password_hash.as_str());
    let matches = app.passwords.verify(password, hash).await?;
    let user = match user {
        Some(user) if matches => user,
        // Already counted by `begin`.
        _ => return Err(GatewayError::InvalidCredentials),
    };
    live.failures.succeeded(&email, client).await;
    let user = rehash_if_needed(app, user, password).await;
    let org = standing(app, &user, now).await?;
    Ok(Credentials {
        user,
        org,
        trusted_device,
    })
}

/// Replace a legacy hash (bcrypt, or argon2 with other parameters) once the password is known
/// to be right. Best effort: the sign-in goes on if the store cannot take the new hash.
async fn rehash_if_needed(app: &App, user: Arc<User>, password: &str) -> Arc<User> {
    if !crate::password::needs_rehash(&user.password_hash) {
        return user;
    }
    let password_hash = match app.passwords.hash(password).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(user = %user.id, "could not rehash a legacy password hash: {e}");
            return user;
        }
    };
    // Read the record again, so a change made meanwhile (a demotion, say) is not undone.
    let current = match app.users.user_by_id(&user.id).await {
        Ok(Some(current)) if current.password_hash == user.password_hash => current,
        _ => return user,
    };
    let upgraded = User {
        password_hash,
        ..User::clone(&current)
    };
    match app.users.save_user(upgraded.clone()).await {
        Ok(()) => {
            tracing::info!(user = %user.id, "password hash upgraded to argon2id");
            Arc::new(upgraded)
        }
        Err(e) => {
            tracing::warn!(user = %user.id, "could not save an upgraded password hash: {e}");
            current
        }
    }
}

/// Where a correct password leads: a session now, or an email code first.
pub enum Admission {
    SignedIn {
        token: String,
    },
    /// The body of the MFA challenge answer; no token was issued.
    Challenge(serde_json::Value),
}

/// Decide what a user who just proved their password gets. MFA applies when the account has
/// it on, or when super-mandatory enforcement covers it; a device that passed MFA before (its
/// device token, from the cookie or the body) skips the challenge.
pub async fn admit(
    app: &App,
    live: &Live,
    user: &User,
    family: Family,
    trusted_device: bool,
    now: i64,
) -> Result<Admission, GatewayError> {
    let mfa = &live.config.mfa;
    let mandatory_super = !user.mfa_enabled
        && mfa.super_mandatory
        && now >= mfa.super_rollout
        && user.account_type == AccountType::Super;
    if !(user.mfa_enabled || mandatory_super) || (user.mfa_enabled && trusted_device) {
        return signed_in(app, live, user, family, now).await;
    }
    challenge(app, live, user, family, mandatory_super, now).await
}

async fn signed_in(
    app: &App,
    live: &Live,
    user: &User,
    family: Family,
    now: i64,
) -> Result<Admission, GatewayError> {
    let token = start_session(app, live, user, family, now).await?;
    Ok(Admission::SignedIn { token })
}

/// Issue a challenge and mail its code. If the mail cannot be sent, the challenge is deleted
/// before the error is returned, so nothing usable is left behind.
async fn challenge(
    app: &App,
    live: &Live,
    user: &User,
    family: Family,
    mandatory_super: bool,
    now: i64,
) -> Result<Admission, GatewayError> {
    let mfa = &live.config.mfa;
    let id = mfa::new_challenge_id();
    let code = mfa::new_code();
    let ttl = i64::try_from(mfa.code_ttl.as_secs()).unwrap_or(i64::MAX);
    app.challenges
        .create_challenge(Challenge {
            id: id.clone(),
            user_id: user.id.clone(),
            code_hash: mfa::code_hash(&live.config.token.secret, &id, &code),
            family,
            mandatory_super,
            expires_at: now.saturating_add(ttl),
            attempts: 0,
        })
        .await?;
    if let Err(e) = live
        .mailer
        .send(&user.email, &code, &id, mfa.code_ttl)
        .await
    {
        tracing::error!(user = %user.id, "verification code not delivered: {e}");
        app.challenges.delete_challenge(&id).await?;
        return Err(GatewayError::DeliveryFailed);
    }
    crate::metrics::metrics().credential(crate::metrics::Credential::MfaSent);
    let mut body = serde_json::json!({
        "mfaRequired": true,
        "challengeId": id,
        "maskedEmail": mfa::mask_email(&user.email),
    });
    if mandatory_super {
        body["mandatorySuper"] = serde_json::Value::Bool(true);
    }
    Ok(Admission::Challenge(body))
}

/// Open a server-side session for `user` and sign its first token.
/// Open a server-side session for `user`, started by an endpoint of `family` (which sets its
/// tokens' lifetime), and sign its first token.
pub async fn start_session(
    app: &App,
    live: &Live,
    user: &User,
    family: Family,
    now: i64,
) -> Result<String, GatewayError> {
    let session = Session {
        id: new_session_id(),
        user_id: user.id.clone(),
        created_at: now,
        expires_at: live.session_end(family, now, now),
        family,
    };
    app.sessions.create(session.clone()).await?;
    issue_token(live, user, &session, now)
}

/// A token for `session`, issued at `now`, ending with the session's current expiry.
pub fn issue_token(
    live: &Live,
    user: &User,
    session: &Session,
    now: i64,
) -> Result<String, GatewayError> {
    Ok(live.keys.issue(&Claims {
        user_id: user.id.clone(),
        email: user.email.clone(),
        customer_id: user.customer_id.clone(),
        account_type: user.account_type,
        session_id: session.id.clone(),
        iat: now,
        exp: session.expires_at,
        session_start: Some(session.created_at),
    })?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::config::Config;
    use crate::password::{Passwords, hash_blocking};
    use crate::store::memory::{MemoryMfa, MemorySessions, MemoryUsers};
    use crate::store::users_file::UsersFile;
    use arc_swap::ArcSwap;

    const PASSWORD: &str = "correct horse battery";

    /// The whole state, in memory, without a socket or a Pingora server.
    fn app(account_type: &str) -> App {
        let users = format!(
            "[[orgs]]\nid = \"o\"\nname = \"Org\"\n\n[[users]]\nid = \"u\"\nemail = \"a@b.c\"\n\
             password_hash = \"{}\"\naccount_type = \"{account_type}\"\norg = \"o\"\n",
            hash_blocking(PASSWORD).unwrap()
        );
        let file = UsersFile::parse(&users, std::path::Path::new("users.toml")).unwrap();
        let config = Config::from_toml(
            "[token]\nsecret = \"0123456789abcdef0123456789abcdef\"\n\
             [rate_limit]\naccount_failures = 2\n",
            "test",
            &|_| None,
        )
        .unwrap();
        let mfa = Arc::new(MemoryMfa::default());
        App {
            live: Arc::new(ArcSwap::from_pointee(Live::build(config, None).unwrap())),
            users: Arc::new(MemoryUsers::new(file, None)),
            sessions: Arc::new(MemorySessions::default()),
            challenges: Arc::clone(&mfa) as Arc<dyn crate::store::ChallengeStore>,
            devices: mfa,
            logins: Arc::new(crate::store::memory::MemoryLogins::default()),
            revocations: Arc::default(),
            passwords: Arc::new(Passwords::new(1, 8, crate::config::HashPriority::Idle, [])),
        }
    }

    fn client() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }

    #[tokio::test]
    async fn a_session_token_authenticates_until_revoked() {
        let app = app("user");
        let live = app.live.load_full();
        let checked = check_password(&app, &live, "A@b.c", PASSWORD, None, client(), 100)
            .await
            .unwrap();
        let token = start_session(&app, &live, &checked.user, Family::Profile, 100)
            .await
            .unwrap();
        let caller = authenticate(&app, &live, &token, 101).await.unwrap();
        assert_eq!(caller.token.claims.user_id, "u");
        let session = &caller.token.claims.session_id;
        assert!(app.sessions.revoke("u", session).await.unwrap());
        assert!(matches!(
            authenticate(&app, &live, &token, 102).await,
            Err(GatewayError::SessionExpired)
        ));
    }

    #[tokio::test]
    async fn tokens_issued_before_the_cut_off_are_refused() {
        let app = app("user");
        let live = app.live.load_full();
        let user = app.users.user_by_id("u").await.unwrap().unwrap();
        let old = start_session(&app, &live, &user, Family::Profile, 100)
            .await
            .unwrap();
        app.revocations.raise(101);
        assert!(matches!(
            authenticate(&app, &live, &old, 102).await,
            Err(GatewayError::SessionExpired)
        ));
        let new = start_session(&app, &live, &user, Family::Profile, 101)
            .await
            .unwrap();
        assert!(authenticate(&app, &live, &new, 102).await.is_ok());
    }

    #[tokio::test]
    async fn unknown_emails_and_wrong_passwords_fail_alike_and_lock_alike() {
        let app = app("user");
        let live = app.live.load_full();
        for email in ["a@b.c", "nobody@b.c"] {
            for _ in 0..2 {
                let e = check_password(&app, &live, email, "wrong", None, client(), 100).await;
                assert!(
                    matches!(e, Err(GatewayError::InvalidCredentials)),
                    "{email}"
                );
            }
            let e = check_password(&app, &live, email, PASSWORD, None, client(), 100).await;
            assert!(
                matches!(e.err(), Some(GatewayError::RateLimited { .. })),
                "{email}"
            );
        }
    }

    #[tokio::test]
    async fn the_current_record_decides_the_account_type() {
        let app = app("admin");
        let live = app.live.load_full();
        let user = app.users.user_by_id("u").await.unwrap().unwrap();
        let token = start_session(&app, &live, &user, Family::Profile, 100)
            .await
            .unwrap();
        app.users
            .save_user(User {
                account_type: AccountType::User,
                ..User::clone(&user)
            })
            .await
            .unwrap();
        let caller = authenticate(&app, &live, &token, 101).await.unwrap();
        assert_eq!(caller.token.claims.account_type, AccountType::User);
        assert_eq!(caller.token.header_values[2], "user");
    }
}
