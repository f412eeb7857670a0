//! The endpoints the gateway answers itself. Each handler takes the request already parsed into
//! plain values and returns a `Reply`, so handlers never touch the socket.

mod account;
mod mfa;
mod refresh;
mod register;
mod signin;
mod signout;
mod sso;

use std::net::IpAddr;

use http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::app::App;
use crate::auth::Caller;
use crate::error::GatewayError;
use crate::live::Live;
use crate::views::Family;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Signin,
    Login,
    Register,
    Refresh,
    Me,
    ChangePassword,
    MfaVerify,
    Signout,
    SignoutAll,
    /// POST /api/auth/sso/start `{provider}`.
    SsoStart,
    /// GET /api/auth/sso/{provider}/start: the same, as a redirect for plain links.
    SsoStartLink,
    SsoCallback,
}

impl Endpoint {
    /// Every endpoint, in declaration order (`metrics` indexes its series by it).
    pub const ALL: [Endpoint; 12] = [
        Endpoint::Signin,
        Endpoint::Login,
        Endpoint::Register,
        Endpoint::Refresh,
        Endpoint::Me,
        Endpoint::ChangePassword,
        Endpoint::MfaVerify,
        Endpoint::Signout,
        Endpoint::SignoutAll,
        Endpoint::SsoStart,
        Endpoint::SsoStartLink,
        Endpoint::SsoCallback,
    ];

    /// The endpoint's name in the access log and as the `route` label of its metrics.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Signin => "signin",
            Endpoint::Login => "login",
            Endpoint::Register => "register",
            Endpoint::Refresh => "refresh",
            Endpoint::Me => "me",
            Endpoint::ChangePassword => "change_password",
            Endpoint::MfaVerify => "mfa_verify",
            Endpoint::Signout => "signout",
            Endpoint::SignoutAll => "signout_all",
            Endpoint::SsoStart => "sso_start",
            Endpoint::SsoStartLink => "sso_start_link",
            Endpoint::SsoCallback => "sso_callback",
        }
    }

    pub fn classify(path: &str) -> Option<Endpoint> {
        match path {
            "/api/auth/signin" => Some(Endpoint::Signin),
            "/api/auth/login" => Some(Endpoint::Login),
            "/api/auth/register" => Some(Endpoint::Register),
            "/api/user/refresh/profile" => Some(Endpoint::Refresh),
            "/api/auth/me" => Some(Endpoint::Me),
            "/api/auth/change-password" => Some(Endpoint::ChangePassword),
            "/api/auth/mfa/verify" => Some(Endpoint::MfaVerify),
            "/api/auth/signout" => Some(Endpoint::Signout),
            "/api/auth/signout-all" => Some(Endpoint::SignoutAll),
            "/api/auth/sso/start" => Some(Endpoint::SsoStart),
            "/api/auth/sso_callback" => Some(Endpoint::SsoCallback),
            _ => sso_link_provider(path).map(|_| Endpoint::SsoStartLink),
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::Me | Endpoint::SsoStartLink => "GET",
            _ => "POST",
        }
    }

    /// Credential endpoints share the per-IP authentication rate limit.
    pub fn is_credential(self) -> bool {
        matches!(
            self,
            Endpoint::Signin
                | Endpoint::Login
                | Endpoint::Register
                | Endpoint::ChangePassword
                | Endpoint::MfaVerify
                | Endpoint::SsoCallback
        )
    }

    /// Endpoints that act for an already signed-in caller.
    pub fn needs_caller(self) -> bool {
        matches!(
            self,
            Endpoint::Refresh
                | Endpoint::Me
                | Endpoint::ChangePassword
                | Endpoint::Signout
                | Endpoint::SignoutAll
        )
    }
}

/// The provider named by `/api/auth/sso/{provider}/start`.
pub fn sso_link_provider(path: &str) -> Option<&str> {
    let provider = path
        .strip_prefix("/api/auth/sso/")?
        .strip_suffix("/start")?;
    (!provider.is_empty() && !provider.contains('/')).then_some(provider)
}

/// What a handler gets: the body (already bounded), the authenticated caller if the endpoint
/// needs one, and the clock.
pub struct Request<'a> {
    /// The normalised path.
    pub path: &'a str,
    /// Every `Cookie` header of the request, joined with `; `.
    pub cookies: String,
    pub body: &'a [u8],
    pub caller: Option<Caller>,
    pub client_ip: IpAddr,
    pub now: i64,
    /// The trusted-device cookie, when the client sent one.
    pub device_cookie: Option<String>,
}

impl Request<'_> {
    fn caller(&self) -> Result<&Caller, GatewayError> {
        self.caller.as_ref().ok_or(GatewayError::MissingToken)
    }

    /// The value of cookie `name`, if the request sent it.
    fn cookie(&self, name: &str) -> Option<&str> {
        crate::mfa::cookie(&self.cookies, name)
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
    /// The user the request signed in, for the access log.
    pub user_id: Option<String>,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
            headers: Vec::new(),
            user_id: None,
        }
    }

    /// The reply signs `user_id` in.
    pub fn signing_in(mut self, user_id: &str) -> Reply {
        self.user_id = Some(user_id.to_owned());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

pub async fn handle(
    endpoint: Endpoint,
    app: &App,
    live: &Live,
    req: Request<'_>,
) -> Result<Reply, GatewayError> {
    let result = match endpoint {
        Endpoint::Signin => signin::sign_in(app, live, req, Family::Profile).await,
        Endpoint::Login => signin::sign_in(app, live, req, Family::UserFirm).await,
        Endpoint::Register => register::register(app, live, req).await,
        Endpoint::Refresh => refresh::refresh(app, live, req).await,
        Endpoint::Me => account::me(req),
        Endpoint::ChangePassword => account::change_password(app, live, req).await,
        Endpoint::MfaVerify => mfa::verify(app, live, req).await,
        Endpoint::Signout => signout::signout(app, req).await,
        Endpoint::SignoutAll => signout::signout_all(app, req).await,
        Endpoint::SsoStart => sso::start(app, live, req).await,
        Endpoint::SsoStartLink => sso::start_link(app, live, req).await,
        Endpoint::SsoCallback => sso::callback(app, live, req).await,
    };
    count_credential(endpoint, &result);
    result
}

/// The outcome of a credential endpoint. `ok` for signin and login means the password was
/// right (a token or an MFA challenge follows; a challenge also counts `mfa sent`). `failed` is
/// a refusal (4xx) other than a rate limit, which is counted as such; a server error (5xx) is
/// not a verdict on the credentials and is counted only with the request's status.
fn count_credential(endpoint: Endpoint, result: &Result<Reply, GatewayError>) {
    use crate::metrics::Credential::*;
    let (ok, failed) = match endpoint {
        Endpoint::Signin => (SigninOk, SigninFailed),
        Endpoint::Login => (LoginOk, LoginFailed),
        Endpoint::MfaVerify => (MfaVerified, MfaFailed),
        Endpoint::SsoCallback => (SsoOk, SsoFailed),
        _ => return,
    };
    let outcome = match result {
        Ok(_) => ok,
        Err(GatewayError::RateLimited(_)) => return,
        Err(e) if e.status().is_client_error() => failed,
        Err(_) => return,
    };
    crate::metrics::metrics().credential(outcome);
}

/// Passwords are at least `password.min_length` and at most 128 characters; longer ones are
/// refused rather than silently truncated.
pub fn validate_password(live: &Live, field: &str, password: &str) -> Result<(), GatewayError> {
    let min = live.config.password.min_length;
    let max = crate::config::MAX_PASSWORD_CHARS;
    let chars = password.chars().count();
    if chars < min || chars > max {
        return Err(GatewayError::BadRequest(format!(
            "{field} must be between {min} and {max} characters"
        )));
    }
    Ok(())
}

/// Parse a JSON body into `T`, turning every failure into a 400 that says what was wrong.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    // serde would also read a struct from an array of its fields in order; the contract says
    // an object, and only an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let valid_json = serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
        return Err(GatewayError::BadRequest(
            if valid_json || body.iter().all(u8::is_ascii_whitespace) {
                "Request body must be a JSON object"
            } else {
                "Malformed JSON body"
            }
            .into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        GatewayError::BadRequest(match e.classify() {
            Category::Data => {
                // "missing field `password` at line 1 column 20" -> "missing field `password`"
                let text = e.to_string();
                match text.find(" at line ") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                }
            }
            Category::Syntax | Category::Eof | Category::Io => "Malformed JSON body".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Creds {
        email: String,
        password: String,
    }

    #[test]
    fn json_errors_are_bad_requests_with_reasons() {
        let msg = |b: &[u8]| match parse_json::<Creds>(b) {
            Err(GatewayError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(msg(b"{\"email\":\"a\""), "Malformed JSON body");
        assert_eq!(
            msg(br#"["a@b.c", "pw"]"#),
            "Request body must be a JSON object"
        );
        assert_eq!(msg(b" []"), "Request body must be a JSON object");
        assert_eq!(msg(b"\"x\""), "Request body must be a JSON object");
        assert_eq!(msg(b"{\"email\":\"a\"}"), "missing field `password`");
        assert_eq!(msg(b""), "Request body must be a JSON object");
        assert!(msg(b"{\"email\":1,\"password\":\"x\"}").starts_with("invalid type"));
        assert!(parse_json::<Creds>(b"{\"email\":\"a\",\"password\":\"b\",\"extra\":1}").is_ok());
    }

    #[test]
    fn all_lists_every_endpoint_in_order() {
        for (i, e) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?}");
        }
    }

    #[test]
    fn classify_exact_paths() {
        assert_eq!(
            Endpoint::classify("/api/auth/signin"),
            Some(Endpoint::Signin)
        );
        assert_eq!(Endpoint::classify("/api/auth/signin/x"), None);
        assert_eq!(
            Endpoint::classify("/api/auth/sso/start"),
            Some(Endpoint::SsoStart)
        );
        assert_eq!(
            Endpoint::classify("/api/auth/sso/google/start"),
            Some(Endpoint::SsoStartLink)
        );
        assert_eq!(
            sso_link_provider("/api/auth/sso/google/start"),
            Some("google")
        );
        assert_eq!(Endpoint::classify("/api/auth/sso/a/b/start"), None);
        assert_eq!(Endpoint::classify("/api/auth/sso//start"), None);
        assert_eq!(
            Endpoint::classify("/api/user/refresh/profile"),
            Some(Endpoint::Refresh)
        );
    }
}
