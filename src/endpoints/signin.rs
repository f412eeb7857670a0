//! POST /api/auth/signin (seed 000) and POST /api/auth/login (seed 003): email and password in,
//! a token and the family's view of the user out.

use serde::Deserialize;

use super::{Reply, Request, parse_json};
use crate::app::App;
use crate::auth::{Admission, admit, check_password};
use crate::error::GatewayError;
use crate::live::Live;
use crate::views::{self, Family};

#[derive(Deserialize)]
pub struct Credentials {
    pub email: String,
    pub password: String,
    /// A trusted-device token from an earlier MFA verify (the cookie works too).
    #[serde(default, rename = "deviceToken")]
    pub device_token: Option<String>,
}

pub async fn sign_in(
    app: &App,
    live: &Live,
    req: Request<'_>,
    family: Family,
) -> Result<Reply, GatewayError> {
    let creds: Credentials = parse_json(req.body)?;
    let device = creds
        .device_token
        .as_deref()
        .or(req.device_cookie.as_deref());
    let checked = check_password(
        app,
        live,
        &creds.email,
        &creds.password,
        device,
        req.client_ip,
        req.now,
    )
    .await?;
    let (user, org) = (checked.user, checked.org);
    match admit(app, live, &user, family, checked.trusted_device, req.now).await? {
        Admission::SignedIn { token } => {
            tracing::info!(user = %user.id, client = %req.client_ip, "signed in");
            Ok(
                Reply::ok(views::signed_in(family, &token, &user, org.as_deref()))
                    .signing_in(&user.id),
            )
        }
        Admission::Challenge(body) => {
            tracing::info!(user = %user.id, client = %req.client_ip, "mfa challenge issued");
            Ok(Reply::ok(body))
        }
    }
}
