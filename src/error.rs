//! Every way a request can be refused, and the one place each maps to a status and JSON body.
//!
//! Leaf modules have their own error types (`token::TokenError`, `ratelimit::Limited`,
//! `password::PasswordError`, `store::StoreError`, `path::PathError`), each keeping its source;
//! this enum wraps them, and `status` and `texts` are the only mapping to HTTP.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use crate::password::PasswordError;
use crate::path::PathError;
use crate::ratelimit::Limited;
use crate::sso::SsoError;
use crate::store::StoreError;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no token in any location")]
    MissingToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("session revoked or unknown")]
    SessionExpired,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("account disabled")]
    AccountDisabled,
    #[error("organization disabled or expired")]
    FirmDisabled,
    #[error("not allowed on this route")]
    Forbidden,
    #[error("current password is wrong")]
    WrongPassword,
    #[error("registration disabled")]
    RegistrationClosed,
    #[error("wrong verification code")]
    WrongCode,
    #[error("verification challenge unknown, used or expired")]
    ChallengeGone,
    #[error("too many wrong verification codes")]
    ChallengeExhausted,
    #[error("verification code could not be delivered")]
    DeliveryFailed,
    #[error(transparent)]
    RateLimited(#[from] Limited),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Sso(#[from] SsoError),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request target too long")]
    UriTooLong { limit: usize },
    #[error("too many header fields")]
    TooManyHeaders { limit: usize },
    #[error("no route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("upstream unavailable")]
    BadGateway,
    #[error("upstream did not answer in time")]
    GatewayTimeout,
    #[error("admin token missing or wrong")]
    AdminUnauthorized,
    #[error("no live session has this id")]
    UnknownSession,
    #[error("no user has this id")]
    UnknownUser,
    #[error("origin not allowed")]
    OriginNotAllowed,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

const UNAVAILABLE: (&str, &str) = (
    "Service Unavailable",
    "Authentication service temporarily unavailable",
);

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            Token(TokenError::Signing(_)) | Store(StoreError::Unavailable { .. }) | Password(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            MissingToken | Token(_) | SessionExpired | InvalidCredentials | AccountDisabled
            | FirmDisabled | WrongPassword | WrongCode | AdminUnauthorized => {
                StatusCode::UNAUTHORIZED
            }
            ChallengeGone | ChallengeExhausted => StatusCode::GONE,
            DeliveryFailed | BadGateway | Sso(SsoError::Unavailable { .. }) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Sso(SsoError::Failed(_)) => StatusCode::UNAUTHORIZED,
            Sso(SsoError::NoAccount) => StatusCode::FORBIDDEN,
            Sso(SsoError::UnknownProvider) => StatusCode::BAD_REQUEST,
            Sso(SsoError::NoSuchProvider) => StatusCode::NOT_FOUND,
            Forbidden | RegistrationClosed | OriginNotAllowed => StatusCode::FORBIDDEN,
            Store(StoreError::EmailTaken) => StatusCode::CONFLICT,
            NotFound | UnknownSession | UnknownUser => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            TooManyHeaders { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            BadRequest(_) | Path(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// `(error, message)` as the README's error table lists them (the contract clients of both
    /// seed families read).
    pub fn texts(&self) -> (&'static str, Cow<'static, str>) {
        use GatewayError::*;
        let fixed = |(e, m): (&'static str, &'static str)| (e, Cow::Borrowed(m));
        match self {
            MissingToken => fixed(("Authentication Required", "Authentication Required")),
            Token(TokenError::Expired) => fixed(("Token expired", "jwt expired")),
            Token(TokenError::InvalidSignature) => fixed(("Invalid token", "invalid signature")),
            Token(TokenError::InvalidAlgorithm) => fixed(("Invalid token", "invalid algorithm")),
            Token(TokenError::Malformed) => fixed(("Invalid token", "jwt malformed")),
            Token(TokenError::Signing(_)) | Store(StoreError::Unavailable { .. }) | Password(_) => {
                fixed(UNAVAILABLE)
            }
            SessionExpired => fixed(("Session expired", "session expired")),
            InvalidCredentials => fixed(("Invalid email or password", "Invalid email or password")),
            AccountDisabled => fixed(("Account is disabled", "Account is disabled")),
            FirmDisabled => fixed(("Firm account is disabled", "Firm account is disabled")),
            Forbidden => fixed((
                "Forbidden",
                "Your account type is not allowed to access this resource",
            )),
            WrongPassword => fixed(("Invalid password", "Current password is incorrect")),
            Store(StoreError::EmailTaken) => fixed((
                "Email already registered",
                "An account with this email already exists",
            )),
            RegistrationClosed => fixed(("Forbidden", "Registration is disabled")),
            WrongCode => fixed(("Invalid code", "The verification code is incorrect")),
            ChallengeGone => fixed((
                "Challenge expired",
                "This verification challenge has expired or was already used; sign in again",
            )),
            ChallengeExhausted => fixed((
                "Too many attempts",
                "Too many wrong verification codes; sign in again",
            )),
            DeliveryFailed => fixed((
                "Delivery failed",
                "The verification code could not be sent; try again later",
            )),
            RateLimited(l) => (
                "Too Many Requests",
                format!("Too many requests, retry in {} seconds", l.retry_after_secs).into(),
            ),
            BadRequest(why) => ("Bad Request", why.clone().into()),
            Path(e) => ("Bad Request", e.to_string().into()),
            PayloadTooLarge { limit } => (
                "Payload Too Large",
                format!("Request body is larger than {limit} bytes").into(),
            ),
            UriTooLong { limit } => (
                "URI Too Long",
                format!("The request target is longer than {limit} bytes").into(),
            ),
            TooManyHeaders { limit } => (
                "Request Header Fields Too Large",
                format!("The request has more than {limit} header fields").into(),
            ),
            NotFound => fixed(("Not Found", "No route matches this path")),
            MethodNotAllowed => {
                fixed(("Method Not Allowed", "Method not allowed on this endpoint"))
            }
            BadGateway => fixed(("Bad Gateway", "The upstream service is unavailable")),
            GatewayTimeout => fixed((
                "Gateway Timeout",
                "The upstream service did not answer in time",
            )),
            AdminUnauthorized => fixed((
                "Unauthorized",
                "A valid admin token is required (Authorization: Bearer <admin token>)",
            )),
            UnknownSession => fixed(("Not Found", "No live session has this id")),
            UnknownUser => fixed(("Not Found", "No user has this id")),
            OriginNotAllowed => fixed(("Forbidden", "This origin is not allowed")),
            Sso(SsoError::Failed(why)) => ("SSO failed", Cow::Borrowed(*why)),
            Sso(SsoError::NoAccount) => {
                fixed(("Forbidden", "No account is linked to this identity"))
            }
            Sso(SsoError::UnknownProvider) => fixed(("Bad Request", "Unknown identity provider")),
            Sso(SsoError::NoSuchProvider) => fixed(("Not Found", "Unknown identity provider")),
            Sso(SsoError::Unavailable { .. }) => fixed((
                "Identity provider unavailable",
                "The identity provider could not be reached; try again later",
            )),
        }
    }

    pub fn body(&self) -> Bytes {
        let (error, message) = self.texts();
        let body = ErrorBody {
            error,
            message: &message,
        };
        // Serializing two strings cannot fail; the fallback keeps this total anyway.
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(b"{\"error\":\"Error\",\"message\":\"Error\"}"))
    }

    /// Extra response headers this error carries.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            GatewayError::RateLimited(l) => Some(l.retry_after_secs),
            GatewayError::Password(PasswordError::Busy) => Some(1),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_table() {
        let cases = [
            (
                GatewayError::MissingToken,
                401,
                "Authentication Required",
                "Authentication Required",
            ),
            (
                TokenError::Expired.into(),
                401,
                "Token expired",
                "jwt expired",
            ),
            (
                TokenError::InvalidSignature.into(),
                401,
                "Invalid token",
                "invalid signature",
            ),
            (
                TokenError::Malformed.into(),
                401,
                "Invalid token",
                "jwt malformed",
            ),
            (
                GatewayError::SessionExpired,
                401,
                "Session expired",
                "session expired",
            ),
            (
                GatewayError::InvalidCredentials,
                401,
                "Invalid email or password",
                "Invalid email or password",
            ),
            (
                GatewayError::AccountDisabled,
                401,
                "Account is disabled",
                "Account is disabled",
            ),
            (
                GatewayError::FirmDisabled,
                401,
                "Firm account is disabled",
                "Firm account is disabled",
            ),
            (
                StoreError::EmailTaken.into(),
                409,
                "Email already registered",
                "An account with this email already exists",
            ),
            (
                SsoError::Failed("ID token nonce mismatch").into(),
                401,
                "SSO failed",
                "ID token nonce mismatch",
            ),
            (
                SsoError::NoAccount.into(),
                403,
                "Forbidden",
                "No account is linked to this identity",
            ),
            (
                SsoError::Unavailable {
                    provider: "google".into(),
                    reason: "timed out".into(),
                }
                .into(),
                502,
                "Identity provider unavailable",
                "The identity provider could not be reached; try again later",
            ),
            (
                SsoError::UnknownProvider.into(),
                400,
                "Bad Request",
                "Unknown identity provider",
            ),
            (
                StoreError::unavailable("redis", "timed out").into(),
                503,
                "Service Unavailable",
                "Authentication service temporarily unavailable",
            ),
        ];
        for (e, status, error, message) in cases {
            assert_eq!(e.status().as_u16(), status);
            let body: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert_eq!(body["error"], error);
            assert_eq!(body["message"], message);
        }
        assert_eq!(GatewayError::Forbidden.status(), StatusCode::FORBIDDEN);
        let limited = GatewayError::from(Limited {
            retry_after_secs: 3,
        });
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.retry_after(), Some(3));
        assert_eq!(
            GatewayError::PayloadTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn a_store_outage_keeps_its_cause() {
        let e = GatewayError::from(StoreError::unavailable("redis", "connection refused"));
        assert_eq!(e.to_string(), "redis: connection refused");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("connection refused"));
    }
}
