//! Single sign-on endpoints: POST /api/auth/sso/start and GET /api/auth/sso/{provider}/start
//! send the browser to its provider; POST /api/auth/sso_callback (seed 001) brings it back and
//! answers exactly as signin.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::{Reply, Request, parse_json, sso_link_provider};
use crate::app::App;
use crate::auth::{Admission, admit, standing};
use crate::error::GatewayError;
use crate::live::Live;
use crate::mfa;
use crate::sso::{SsoError, Started, link};
use crate::views::{self, Family};

/// Longest `code` or `state` accepted: providers' codes are far shorter.
const MAX_PARAMETER_BYTES: usize = 4096;

#[derive(Deserialize)]
struct StartBody {
    provider: String,
}

pub async fn start(app: &App, live: &Live, req: Request<'_>) -> Result<Reply, GatewayError> {
    let body: StartBody = parse_json(req.body)?;
    let started = begin(app, live, &req, &body.provider).await?;
    Ok(Reply::ok(json!({ "url": started.url }))
        .with_header("set-cookie", binding_cookie(live, &started.binding)))
}

pub async fn start_link(app: &App, live: &Live, req: Request<'_>) -> Result<Reply, GatewayError> {
    let provider = sso_link_provider(req.path).ok_or(SsoError::NoSuchProvider)?;
    let started = match begin(app, live, &req, provider).await {
        Err(GatewayError::Sso(SsoError::UnknownProvider)) => {
            return Err(SsoError::NoSuchProvider.into());
        }
        other => other?,
    };
    Ok(Reply {
        status: StatusCode::FOUND,
        body: json!({ "url": started.url }),
        headers: Vec::new(),
        user_id: None,
    }
    .with_header("location", started.url)
    .with_header("set-cookie", binding_cookie(live, &started.binding)))
}

async fn begin(
    app: &App,
    live: &Live,
    req: &Request<'_>,
    provider: &str,
) -> Result<Started, GatewayError> {
    live.sso_start_limiter.check(req.client_ip).await?;
    let cookie = req.cookie(&live.config.sso.binding_cookie);
    let started = live
        .sso
        .start(app.logins.as_ref(), provider, cookie, req.now)
        .await
        .inspect_err(|e| log_failure(provider, e))?;
    tracing::info!(provider, client = %req.client_ip, "single sign-on started");
    Ok(started)
}

/// `HttpOnly` (scripts never need it), `Secure`, and `SameSite=Lax`: sent with the app's own
/// callback request, not with cross-site posts.
fn binding_cookie(live: &Live, value: &str) -> String {
    let sso = &live.config.sso;
    format!(
        "{}={value}; Max-Age={}; Path=/api/auth; Secure; HttpOnly; SameSite=Lax",
        sso.binding_cookie,
        sso.state_ttl.as_secs()
    )
}

#[derive(Deserialize)]
struct Callback {
    code: String,
    state: String,
    /// The authorization response's `iss` (RFC 9207), when the app passes it on.
    #[serde(default)]
    iss: Option<String>,
    #[serde(default, rename = "deviceToken")]
    device_token: Option<String>,
}

pub async fn callback(app: &App, live: &Live, req: Request<'_>) -> Result<Reply, GatewayError> {
    let cb: Callback = parse_json(req.body)?;
    for (field, value) in [("code", &cb.code), ("state", &cb.state)] {
        if value.is_empty() || value.len() > MAX_PARAMETER_BYTES {
            return Err(GatewayError::BadRequest(format!(
                "{field} must be between 1 and {MAX_PARAMETER_BYTES} bytes"
            )));
        }
    }
    let cookie = req.cookie(&live.config.sso.binding_cookie);
    let finished = live
        .sso
        .finish(
            app.logins.as_ref(),
            &cb.code,
            &cb.state,
            cb.iss.as_deref(),
            cookie,
            req.now,
        )
        .await?;
    let provider = &finished.provider.settings;
    let user = link::user_for(
        app.users.as_ref(),
        &app.passwords,
        provider,
        &finished.claims,
    )
    .await
    .inspect_err(|e| log_failure(&provider.name, e))?;

    // From here on, exactly as signin after a right password.
    let org = standing(app, &user, req.now).await?;
    let device = cb
        .device_token
        .as_deref()
        .or(req.device_cookie.as_deref())
        .filter(|t| !t.is_empty());
    let trusted_device = match device {
        Some(token) => {
            app.devices
                .is_trusted(&user.id, &mfa::device_hash(token), req.now)
                .await?
        }
        None => false,
    };
    match admit(app, live, &user, Family::Profile, trusted_device, req.now).await? {
        Admission::SignedIn { token } => {
            tracing::info!(provider = %provider.name, user = %user.id, client = %req.client_ip, "signed in by single sign-on");
            Ok(Reply::ok(views::signed_in(
                Family::Profile,
                &token,
                &user,
                org.as_deref(),
            ))
            .signing_in(&user.id))
        }
        Admission::Challenge(body) => {
            tracing::info!(provider = %provider.name, user = %user.id, client = %req.client_ip, "mfa challenge issued after single sign-on");
            Ok(Reply::ok(body))
        }
    }
}

/// Why a login failed, for the operator: the check that failed, never a token or code.
fn log_failure(provider: &str, e: &GatewayError) {
    match e {
        GatewayError::Sso(SsoError::Failed(why)) => {
            tracing::info!(provider, "single sign-on refused: {why}");
        }
        GatewayError::Sso(SsoError::NoAccount) => {
            tracing::info!(
                provider,
                "single sign-on refused: no account for this identity"
            );
        }
        _ => {}
    }
}
