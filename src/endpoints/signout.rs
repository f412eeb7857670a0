//! POST /api/auth/signout: revoke the caller's session, so its tokens stop working at once.

use serde_json::json;

use super::{Reply, Request};
use crate::app::App;
use crate::error::GatewayError;

pub async fn signout(app: &App, req: Request<'_>) -> Result<Reply, GatewayError> {
    let caller = req.caller()?;
    if !app
        .sessions
        .revoke(&caller.user.id, &caller.token.claims.session_id)
        .await?
    {
        return Err(GatewayError::SessionExpired);
    }
    tracing::info!(user = %caller.user.id, "signout");
    Ok(Reply::ok(json!({ "message": "Signed out successfully" })))
}

/// POST /api/auth/signout-all: end every session of the caller, and forget every device they
/// trusted, so the next sign-in on any device asks for an MFA code again.
pub async fn signout_all(app: &App, req: Request<'_>) -> Result<Reply, GatewayError> {
    let caller = req.caller()?;
    let ended = app.sessions.revoke_user(&caller.user.id, None).await?;
    app.devices.forget_devices(&caller.user.id).await?;
    tracing::info!(user = %caller.user.id, sessions = ended, "signed out everywhere");
    Ok(Reply::ok(
        json!({ "message": "Signed out of all sessions" }),
    ))
}
