//! POST /api/auth/signout: revoke the caller's session, so its tokens stop working at once.

use serde_json::json;

use super::{Reply, Request};
use crate::error::GatewayError;
use crate::proxy::Gateway;

pub async fn signout(gw: &Gateway, req: Request<'_>) -> Result<Reply, GatewayError> {
    let caller = req.caller()?;
    if !gw
        .sessions
        .revoke(&caller.user.id, &caller.claims.session_id)
        .await?
    {
        return Err(GatewayError::SessionExpired);
    }
    tracing::info!(user = %caller.user.id, "signout");
    Ok(Reply::ok(json!({ "message": "Signed out successfully" })))
}
