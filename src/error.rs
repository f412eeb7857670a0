//! Every way a request can be refused, and the one place each maps to a status and JSON body.

use bytes::Bytes;
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GatewayError {
    #[error("no token in any location")]
    MissingToken,
    #[error("token expired")]
    TokenExpired,
    #[error("bad token signature")]
    InvalidSignature,
    #[error("token algorithm not allowed")]
    InvalidAlgorithm,
    #[error("token malformed")]
    MalformedToken,
    #[error("session revoked or unknown")]
    SessionExpired,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("account disabled")]
    AccountDisabled,
    #[error("organization disabled or expired")]
    FirmDisabled,
    #[error("account type not allowed on this route")]
    Forbidden,
    #[error("current password is wrong")]
    WrongPassword,
    #[error("email already registered")]
    EmailTaken,
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
    #[error("rate limited for {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
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
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<crate::path::PathError> for GatewayError {
    fn from(e: crate::path::PathError) -> Self {
        GatewayError::BadRequest(e.to_string())
    }
}

impl From<StoreError> for GatewayError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => GatewayError::EmailTaken,
            StoreError::Unavailable(_) => GatewayError::Unavailable(e.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            MissingToken | TokenExpired | InvalidSignature | InvalidAlgorithm | MalformedToken
            | SessionExpired | InvalidCredentials | AccountDisabled | FirmDisabled
            | WrongPassword | WrongCode => 401,
            ChallengeGone | ChallengeExhausted => 410,
            DeliveryFailed => 502,
            Forbidden | RegistrationClosed => 403,
            EmailTaken => 409,
            NotFound => 404,
            MethodNotAllowed => 405,
            PayloadTooLarge { .. } => 413,
            UriTooLong { .. } => 414,
            TooManyHeaders { .. } => 431,
            RateLimited { .. } => 429,
            BadRequest(_) => 400,
            BadGateway => 502,
            Unavailable(_) => 503,
        }
    }

    /// `(error, message)` as the README's error table lists them (the contract clients of both
    /// seed families read).
    pub fn texts(&self) -> (&'static str, std::borrow::Cow<'static, str>) {
        use GatewayError::*;
        match self {
            MissingToken => ("Authentication Required", "Authentication Required".into()),
            TokenExpired => ("Token expired", "jwt expired".into()),
            InvalidSignature => ("Invalid token", "invalid signature".into()),
            InvalidAlgorithm => ("Invalid token", "invalid algorithm".into()),
            MalformedToken => ("Invalid token", "jwt malformed".into()),
            SessionExpired => ("Session expired", "session expired".into()),
            InvalidCredentials => (
                "Invalid email or password",
                "Invalid email or password".into(),
            ),
            AccountDisabled => ("Account is disabled", "Account is disabled".into()),
            FirmDisabled => (
                "Firm account is disabled",
                "Firm account is disabled".into(),
            ),
            Forbidden => (
                "Forbidden",
                "Your account type is not allowed to access this resource".into(),
            ),
            WrongPassword => ("Invalid password", "Current password is incorrect".into()),
            EmailTaken => (
                "Email already registered",
                "An account with this email already exists".into(),
            ),
            RegistrationClosed => ("Forbidden", "Registration is disabled".into()),
            WrongCode => ("Invalid code", "The verification code is incorrect".into()),
            ChallengeGone => (
                "Challenge expired",
                "This verification challenge has expired or was already used; sign in again".into(),
            ),
            ChallengeExhausted => (
                "Too many attempts",
                "Too many wrong verification codes; sign in again".into(),
            ),
            DeliveryFailed => (
                "Delivery failed",
                "The verification code could not be sent; try again later".into(),
            ),
            RateLimited { retry_after_secs } => (
                "Too Many Requests",
                format!("Too many requests, retry in {retry_after_secs} seconds").into(),
            ),
            BadRequest(why) => ("Bad Request", why.clone().into()),
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
            NotFound => ("Not Found", "No route matches this path".into()),
            MethodNotAllowed => (
                "Method Not Allowed",
                "Method not allowed on this endpoint".into(),
            ),
            BadGateway => ("Bad Gateway", "The upstream service is unavailable".into()),
            Unavailable(_) => (
                "Service Unavailable",
                "Authentication service temporarily unavailable".into(),
            ),
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
            GatewayError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_md_error_table() {
        let cases = [
            (
                GatewayError::MissingToken,
                401,
                "Authentication Required",
                "Authentication Required",
            ),
            (
                GatewayError::TokenExpired,
                401,
                "Token expired",
                "jwt expired",
            ),
            (
                GatewayError::InvalidSignature,
                401,
                "Invalid token",
                "invalid signature",
            ),
            (
                GatewayError::MalformedToken,
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
        ];
        for (e, status, error, message) in cases {
            assert_eq!(e.status(), status);
            let body: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert_eq!(body["error"], error);
            assert_eq!(body["message"], message);
        }
        assert_eq!(GatewayError::Forbidden.status(), 403);
        assert_eq!(
            GatewayError::RateLimited {
                retry_after_secs: 3
            }
            .status(),
            429
        );
        assert_eq!(
            GatewayError::RateLimited {
                retry_after_secs: 3
            }
            .retry_after(),
            Some(3)
        );
        assert_eq!(GatewayError::PayloadTooLarge { limit: 1 }.status(), 413);
    }
}
