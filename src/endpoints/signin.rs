//! POST /api/auth/signin: email and password in, `{token, profile}` out.

use serde::Deserialize;
use serde_json::json;

use super::{Reply, Request, parse_json};
use crate::auth::{check_password, start_session};
use crate::error::GatewayError;
use crate::live::Live;
use crate::proxy::Gateway;
use crate::views;

#[derive(Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

pub async fn signin(gw: &Gateway, live: &Live, req: Request<'_>) -> Result<Reply, GatewayError> {
    let creds: Credentials = parse_json(req.body)?;
    let (user, org) = check_password(gw, &creds.email, &creds.password, req.now).await?;
    let token = start_session(gw, live, &user, req.now).await?;
    tracing::info!(user = %user.id, client = %req.client_ip, "signin");
    Ok(Reply::ok(json!({
        "token": token,
        "profile": views::profile(&user, org.as_deref()),
    })))
}
