//! POST /api/user/refresh/profile: a fresh token with a full lifetime, for the same session.

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
    let expires_at = req.now.saturating_add(live.validity_secs());
    // The session slides with the token: both end a full lifetime from now.
    if !app
        .sessions
        .extend(&caller.user.id, session_id, expires_at, req.now)
        .await?
    {
        return Err(GatewayError::SessionExpired);
    }
    let token = issue_token(live, &caller.user, session_id, req.now)?;
    Ok(Reply::ok(json!({
        "token": token,
        "profile": views::profile(&caller.user, caller.org.as_deref()),
    })))
}
