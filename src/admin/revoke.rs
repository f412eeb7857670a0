//! The admin revocation API, `POST /admin/revoke`: end one session, every session and trusted
//! device of a user, or every token issued before a time. Served on the admin listener only,
//! and only when `admin.token` is configured.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use pingora::protocols::http::ServerSession;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::endpoints::parse_json;
use crate::error::GatewayError;
use crate::revocation::Revocations;
use crate::store::{DeviceStore, RevocationStore, SessionStore, UserStore};

/// Largest request body read: the three request shapes are a few dozen bytes.
const MAX_BODY_BYTES: usize = 4 * 1024;

/// How far ahead of this instance's clock an `issuedBefore` may be: enough for an operator's
/// clock a little ahead, not enough to lock every new sign-in out for long (a cut-off in the
/// future refuses the tokens of sign-ins until then).
pub const MAX_AHEAD_SECS: i64 = 60;

/// One revocation, as the request body asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Session(String),
    User(String),
    IssuedBefore(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Body {
    session_id: Option<String>,
    user_id: Option<String>,
    issued_before: Option<i64>,
}

impl Revocation {
    /// Exactly one of `sessionId`, `userId` and `issuedBefore`; anything else is a 400 that
    /// says why. An unknown field is refused too, so a misspelt one never revokes something else.
    pub fn parse(body: &[u8], now: i64) -> Result<Revocation, GatewayError> {
        let body: Body = parse_json(body)?;
        let bad = |why: &str| Err(GatewayError::BadRequest(why.into()));
        match (body.session_id, body.user_id, body.issued_before) {
            (Some(id), None, None) if id.is_empty() => bad("sessionId must not be empty"),
            (Some(id), None, None) => Ok(Revocation::Session(id)),
            (None, Some(id), None) if id.is_empty() => bad("userId must not be empty"),
            (None, Some(id), None) => Ok(Revocation::User(id)),
            (None, None, Some(t)) if t < 0 => bad("issuedBefore must be Unix seconds"),
            (None, None, Some(t)) if t > now.saturating_add(MAX_AHEAD_SECS) => {
                bad("issuedBefore is in the future: it would refuse every sign-in until then")
            }
            (None, None, Some(t)) => Ok(Revocation::IssuedBefore(t)),
            _ => bad("Give exactly one of sessionId, userId and issuedBefore"),
        }
    }
}

/// What the revocation API works on: the stores, and this instance's cut-off.
pub struct Revoker {
    pub users: Arc<dyn UserStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub devices: Arc<dyn DeviceStore>,
    pub store: Arc<dyn RevocationStore>,
    pub revocations: Arc<Revocations>,
}

impl Revoker {
    /// Carry out one revocation; the answer's JSON body.
    ///
    /// - A session is found by its id alone (`SessionStore::owner`) and revoked as a signout
    ///   would be; an unknown, expired or already revoked one is 404.
    /// - A user loses every session and every trusted device; an unknown user is 404.
    /// - The cut-off is raised where every instance reads it, then applied here at once.
    ///
    /// With Redis, every instance drops a revoked session from its cache as soon as the change
    /// is announced, and applies a raised cut-off the same way (or at its next once-a-second
    /// read).
    pub async fn revoke(&self, what: Revocation, now: i64) -> Result<Value, GatewayError> {
        match what {
            Revocation::Session(id) => {
                let owner = self
                    .sessions
                    .owner(&id, now)
                    .await?
                    .ok_or(GatewayError::UnknownSession)?;
                if !self.sessions.revoke(&owner, &id).await? {
                    return Err(GatewayError::UnknownSession);
                }
                tracing::info!(kind = "session", user = %owner, sessions = 1, "admin revocation");
                Ok(json!({ "revoked": 1 }))
            }
            Revocation::User(id) => {
                if self.users.user_by_id(&id).await?.is_none() {
                    return Err(GatewayError::UnknownUser);
                }
                let ended = self.sessions.revoke_user(&id, None).await?;
                self.devices.forget_devices(&id).await?;
                tracing::info!(
                    kind = "user",
                    user = %id,
                    sessions = ended,
                    "admin revocation (trusted devices forgotten too)"
                );
                Ok(json!({ "revoked": ended }))
            }
            Revocation::IssuedBefore(t) => {
                let in_force = self.store.raise_not_before(t).await?;
                self.revocations.raise(in_force);
                tracing::info!(
                    kind = "issuedBefore",
                    requested = t,
                    issued_before = in_force,
                    "admin revocation"
                );
                Ok(json!({ "revoked": "issuedBefore", "issuedBefore": in_force }))
            }
        }
    }

    /// `POST /admin/revoke` with `Authorization: Bearer <admin token>`: the status, the JSON
    /// body, and whether to ask for a bearer token (`WWW-Authenticate`).
    pub async fn serve(
        &self,
        session: &mut ServerSession,
        admin_token: &str,
        now: i64,
    ) -> (StatusCode, Bytes) {
        match self.authorized_request(session, admin_token, now).await {
            Ok(body) => (
                StatusCode::OK,
                serde_json::to_vec(&body)
                    .map(Bytes::from)
                    .unwrap_or_default(),
            ),
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::warn!("admin revocation failed: {e}");
                }
                (e.status(), e.body())
            }
        }
    }

    async fn authorized_request(
        &self,
        session: &mut ServerSession,
        admin_token: &str,
        now: i64,
    ) -> Result<Value, GatewayError> {
        let req = session.req_header();
        if let Err(reason) = check_bearer(&req.headers, admin_token) {
            // Never the presented value: it may be a near miss of the real token.
            tracing::warn!(
                peer = %session.client_addr().map(ToString::to_string).unwrap_or_default(),
                reason,
                "admin API request refused"
            );
            return Err(GatewayError::AdminUnauthorized);
        }
        if req.method != http::Method::POST {
            return Err(GatewayError::MethodNotAllowed);
        }
        let body = read_body(session).await?;
        self.revoke(Revocation::parse(&body, now)?, now).await
    }
}

/// The request's bearer token against the admin token, in constant time: both are hashed first,
/// so neither the content nor the length of the real token shows in the timing.
pub fn check_bearer(headers: &HeaderMap, admin_token: &str) -> Result<(), &'static str> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .ok_or("no Authorization header")?
        .as_bytes();
    let token = presented
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        .map(|_| presented[7..].trim_ascii())
        .ok_or("not a bearer token")?;
    let same = Sha256::digest(token).ct_eq(&Sha256::digest(admin_token.as_bytes()));
    if bool::from(same) {
        Ok(())
    } else {
        Err("wrong admin token")
    }
}

async fn read_body(session: &mut ServerSession) -> Result<Bytes, GatewayError> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(GatewayError::PayloadTooLarge {
                        limit: MAX_BODY_BYTES,
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.into()),
            Err(e) => {
                tracing::debug!("admin request body read failed: {e}");
                return Err(GatewayError::BadRequest(
                    "The request body could not be read".into(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Revocation, String> {
        Revocation::parse(body.as_bytes(), 1_000_000).map_err(|e| match e {
            GatewayError::BadRequest(why) => why,
            other => panic!("{other:?}"),
        })
    }

    #[test]
    fn exactly_one_kind_per_request() {
        assert_eq!(
            parse(r#"{"sessionId":"abc"}"#),
            Ok(Revocation::Session("abc".into()))
        );
        assert_eq!(
            parse(r#"{"userId":"u1"}"#),
            Ok(Revocation::User("u1".into()))
        );
        assert_eq!(
            parse(r#"{"issuedBefore":999999}"#),
            Ok(Revocation::IssuedBefore(999_999))
        );
        assert_eq!(
            parse(r#"{"issuedBefore":1000060}"#),
            Ok(Revocation::IssuedBefore(1_000_060)),
            "a little ahead, for the operator's clock"
        );
        for (body, why) in [
            (r#"{}"#, "exactly one"),
            (r#"{"sessionId":"a","userId":"u"}"#, "exactly one"),
            (r#"{"sessionId":null}"#, "exactly one"),
            (r#"{"sessionId":""}"#, "empty"),
            (r#"{"userId":""}"#, "empty"),
            (r#"{"sesionId":"a"}"#, "unknown field"),
            (r#"{"issuedBefore":-1}"#, "Unix seconds"),
            (r#"{"issuedBefore":1.5}"#, "invalid type"),
            (r#"{"issuedBefore":"1000"}"#, "invalid type"),
            (r#"{"issuedBefore":1000061}"#, "future"),
            (r#"["a"]"#, "JSON object"),
            ("{", "Malformed"),
        ] {
            let got = parse(body).expect_err(body);
            assert!(got.contains(why), "{body}: {got}");
        }
    }

    #[test]
    fn the_bearer_must_match_exactly() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        let token = "admin-token-0123456789";
        assert!(check_bearer(&headers("Bearer admin-token-0123456789"), token).is_ok());
        assert!(check_bearer(&headers("bearer admin-token-0123456789"), token).is_ok());
        assert!(check_bearer(&headers("Bearer admin-token-012345678"), token).is_err());
        assert!(check_bearer(&headers("Bearer admin-token-01234567890"), token).is_err());
        assert!(check_bearer(&headers("Basic admin-token-0123456789"), token).is_err());
        assert!(check_bearer(&headers("Bearer"), token).is_err());
        assert!(check_bearer(&HeaderMap::new(), token).is_err());
    }
}
