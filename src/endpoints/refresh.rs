//! POST /api/user/refresh/profile: a fresh token with a full lifetime (of the session's family),
//! for the same session, never past the session's absolute cap.

use serde_json::json;

use super::{Reply, Request};
use crate::app::App;
use crate::auth::issue_token;
use crate::error::GatewayError;
use crate::live::Live;
use crate::views;

pub async fn refresh(app: &App, live: &Live, req: Request<'_>) -> Result<Reply, GatewayError> {
    let caller = req.caller()?;
    let session_id = &caller.token.claims.session_id;
    let mut session = app
        .sessions
        .session(&caller.user.id, session_id)
        .await?
        .filter(|s| s.serves(&caller.user.id, req.now))
        .ok_or(GatewayError::SessionExpired)?;
    // The session slides with the token: both end a full lifetime from now, or at the cap.
    let expires_at = live.session_end(session.family, session.created_at, req.now);
    if expires_at <= req.now
        || !app
            .sessions
            .extend(&caller.user.id, session_id, expires_at, req.now)
            .await?
    {
        return Err(GatewayError::SessionExpired);
    }
    session.expires_at = expires_at;
    let token = issue_token(live, &caller.user, &session, req.now)?;
    Ok(Reply::ok(json!({
        "token": token,
        "profile": views::profile(&caller.user, caller.org.as_deref()),
    })))
}
