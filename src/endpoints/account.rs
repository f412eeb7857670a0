//! GET /api/auth/me and POST /api/auth/change-password: the signed-in user's own account.

use serde::Deserialize;
use serde_json::json;

use super::{Reply, Request, parse_json, validate_password};
use crate::app::App;
use crate::error::GatewayError;
use crate::live::Live;
use crate::model::User;
use crate::views;

pub fn me(req: Request<'_>) -> Result<Reply, GatewayError> {
    let caller = req.caller()?;
    Ok(Reply::ok(json!({
        "user": views::user(&caller.user),
        "firm": views::firm(caller.org.as_deref()),
    })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// Needs the current password; ends every other session of the user, keeps the caller's.
pub async fn change_password(
    app: &App,
    live: &Live,
    req: Request<'_>,
) -> Result<Reply, GatewayError> {
    let caller = req.caller()?;
    let change: PasswordChange = parse_json(req.body)?;
    validate_password(live, "newPassword", &change.new_password)?;
    // A stolen token must not become a way to guess the password: wrong current passwords
    // count against the account like failed sign-ins.
    let email = &caller.user.email;
    live.failures.begin(email, req.client_ip).await?;
    let current_ok = app
        .passwords
        .verify(&change.current_password, Some(&caller.user.password_hash))
        .await?;
    if !current_ok {
        return Err(GatewayError::WrongPassword);
    }
    live.failures.succeeded(email, req.client_ip).await;
    let password_hash = app.passwords.hash(&change.new_password).await?;
    app.users
        .save_user(User {
            password_hash,
            ..User::clone(&caller.user)
        })
        .await?;
    let ended = app
        .sessions
        .revoke_user(&caller.user.id, Some(&caller.token.claims.session_id))
        .await?;
    app.devices.forget_devices(&caller.user.id).await?;
    tracing::info!(user = %caller.user.id, other_sessions_ended = ended, "password changed");
    Ok(Reply::ok(
        json!({ "message": "Password changed successfully" }),
    ))
}
