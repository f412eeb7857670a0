//! POST /api/auth/mfa/verify: the emailed code in, the token out, and a trusted-device token so
//! this device can skip the challenge next time.

use serde::Deserialize;

use super::{Reply, Request, parse_json};
use crate::app::App;
use crate::auth::{standing, start_session};
use crate::error::GatewayError;
use crate::live::Live;
use crate::mfa;
use crate::model::User;
use crate::store::Attempt;
use crate::views;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Verification {
    challenge_id: String,
    code: String,
}

pub async fn verify(app: &App, live: &Live, req: Request<'_>) -> Result<Reply, GatewayError> {
    let v: Verification = parse_json(req.body)?;
    let settings = &live.config.mfa;
    let code = v.code.trim();
    let hash = mfa::code_hash(&live.config.token.secret, &v.challenge_id, code);
    let challenge = match app
        .challenges
        .attempt(&v.challenge_id, &hash, settings.max_attempts, req.now)
        .await?
    {
        Attempt::Passed(challenge) => challenge,
        Attempt::Wrong { remaining } => {
            tracing::info!(challenge = %v.challenge_id, remaining, "wrong verification code");
            return Err(GatewayError::WrongCode);
        }
        Attempt::Exhausted => return Err(GatewayError::ChallengeExhausted),
        Attempt::Unknown => return Err(GatewayError::ChallengeGone),
    };

    // The account may have changed while the code was in the mail.
    let mut user = app
        .users
        .user_by_id(&challenge.user_id)
        .await?
        .ok_or(GatewayError::ChallengeGone)?;
    let org = standing(app, &user, req.now).await?;
    if challenge.mandatory_super && !user.mfa_enabled {
        // Enrolled by passing the mandatory challenge: from now on this account always has MFA.
        let enrolled = User {
            mfa_enabled: true,
            ..User::clone(&user)
        };
        app.users.save_user(enrolled.clone()).await?;
        user = std::sync::Arc::new(enrolled);
    }

    let token = start_session(app, live, &user, challenge.family, req.now).await?;
    let device_token = mfa::new_device_token();
    let lifetime = settings.trusted_device;
    let expires_at = req
        .now
        .saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    app.devices
        .trust_device(&user.id, &mfa::device_hash(&device_token), expires_at)
        .await?;
    tracing::info!(user = %user.id, client = %req.client_ip, "mfa verified");

    let mut body = views::signed_in(challenge.family, &token, &user, org.as_deref());
    body["deviceToken"] = serde_json::Value::String(device_token.clone());
    let cookie = format!(
        "{}={device_token}; Max-Age={}; Path=/api/auth; Secure; HttpOnly; SameSite=Strict",
        settings.device_cookie,
        lifetime.as_secs()
    );
    Ok(Reply::ok(body)
        .with_header("set-cookie", cookie)
        .signing_in(&user.id))
}
