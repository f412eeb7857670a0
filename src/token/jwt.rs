//! HS256 issue and verification, with the algorithm pinned and expiry checked against a given time.
//!
//! Keys rotate through `[[token.keys]]`: tokens are signed with the first key and carry its
//! `kid`; a token is checked with the key its `kid` names (an unknown `kid` is a bad signature),
//! or with `token.secret` when it names none, as every token issued before keys existed.
//!
//! A token that verified once is remembered (matched on its full text), so the requests that
//! follow with the same token skip the base64, JSON and HMAC work; expiry is still checked
//! against the clock on every use. Only exact byte-for-byte matches of a token that passed full
//! verification hit, so the cache cannot be used to smuggle a token in.

use std::hash::BuildHasher;
use std::sync::Arc;

use crate::ufo::Ufo;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::TokenKey;
use crate::model::{AccountType, User};

/// Why a token was not accepted (or could not be made).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("bad token signature")]
    InvalidSignature,
    #[error("token algorithm not allowed")]
    InvalidAlgorithm,
    #[error("token malformed")]
    Malformed,
    #[error("cannot sign a token")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// The claims the contract fixes, with their wire names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "_id")]
    pub user_id: String,
    pub email: String,
    #[serde(rename = "customerId", default)]
    pub customer_id: String,
    #[serde(rename = "accountType")]
    pub account_type: AccountType,
    #[serde(rename = "sessionId")]
    pub session_id: String,
    pub iat: i64,
    pub exp: i64,
    /// When the session started (Unix seconds): with `token.max_session_secs`, a token whose
    /// `exp` reached `sessionStart` + the cap ended with its session. Absent in tokens issued
    /// before sessions had a cap.
    #[serde(
        rename = "sessionStart",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub session_start: Option<i64>,
}

/// A verified token's claims, with the identity header values for the upstream already built.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub claims: Claims,
    /// `X-User-Id`, `X-User-Email`, `X-Account-Type`, `X-Session-Id`, `X-Customer-Id`.
    pub header_values: [HeaderValue; 5],
}

impl Verified {
    fn new(claims: Claims) -> Verified {
        let value =
            |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
        Verified {
            header_values: [
                value(&claims.user_id),
                value(&claims.email),
                HeaderValue::from_static(claims.account_type.as_str()),
                value(&claims.session_id),
                value(&claims.customer_id),
            ],
            claims,
        }
    }
}

impl Verified {
    /// This token as the current user record describes its holder. The claims are only a hint:
    /// an account demoted, or given a new email, since the token was issued is forwarded and
    /// routed as it is now. The common case, nothing changed, costs four comparisons.
    pub fn as_of(self: &Arc<Self>, user: &User) -> Arc<Verified> {
        let c = &self.claims;
        if c.account_type == user.account_type
            && c.email == user.email
            && c.customer_id == user.customer_id
        {
            return Arc::clone(self);
        }
        Arc::new(Verified::new(Claims {
            email: user.email.clone(),
            account_type: user.account_type,
            customer_id: user.customer_id.clone(),
            ..c.clone()
        }))
    }
}

/// How many verified tokens are remembered. Past it, TinyUFO (S3-FIFO eviction with TinyLFU
/// admission, as in Pingora's own memory cache) lets the least used go one at a time.
const MAX_CACHED_TOKENS: usize = 100_000;

/// A verified token with its exact text: the cache is keyed by a 64-bit hash, so a hit counts
/// only when the text matches byte for byte.
struct Remembered {
    token: Box<str>,
    verified: Arc<Verified>,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    /// For tokens without `kid`: `token.secret`.
    decoding: DecodingKey,
    /// `[[token.keys]]`, by `kid`.
    by_kid: Vec<(String, DecodingKey)>,
    header: Header,
    validation: Validation,
    verified: Ufo<u64, Arc<Remembered>>,
    /// Keyed per process, so which tokens share a slot cannot be planned from outside.
    hasher: foldhash::fast::RandomState,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> JwtKeys {
        JwtKeys::with_keys(secret, &[])
    }

    /// `secret` for tokens without `kid`; `keys` (newest first) sign and verify by `kid`.
    pub fn with_keys(secret: &[u8], keys: &[TokenKey]) -> JwtKeys {
        // Only HS256 is accepted: a header naming `none` or any other algorithm is refused
        // before the signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked by `verify` against the caller's clock, so tests need no sleeping.
        validation.validate_exp = false;
        validation.leeway = 0;
        validation.required_spec_claims.clear();
        let mut header = Header::new(Algorithm::HS256);
        let encoding = match keys.first() {
            Some(first) => {
                header.kid = Some(first.kid.clone());
                EncodingKey::from_secret(&first.secret)
            }
            None => EncodingKey::from_secret(secret),
        };
        JwtKeys {
            encoding,
            decoding: DecodingKey::from_secret(secret),
            by_kid: keys
                .iter()
                .map(|k| (k.kid.clone(), DecodingKey::from_secret(&k.secret)))
                .collect(),
            header,
            validation,
            verified: Ufo::new(MAX_CACHED_TOKENS),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding).map_err(TokenError::Signing)
    }

    /// Check signature, algorithm and shape, then expiry against `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<Verified>, TokenError> {
        let key = self.hasher.hash_one(token);
        if let Some(hit) = self.verified.get(&key).filter(|r| &*r.token == token) {
            if hit.verified.claims.exp <= now {
                self.verified.remove(key);
                return Err(TokenError::Expired);
            }
            return Ok(Arc::clone(&hit.verified));
        }
        let claims = self.verify_uncached(token, now)?;
        let verified = Arc::new(Verified::new(claims));
        let remembered = Remembered {
            token: token.into(),
            verified: Arc::clone(&verified),
        };
        // May be declined by the admission policy, or evict a less used token: never all.
        self.verified.put(key, Arc::new(remembered));
        Ok(verified)
    }

    /// The claims of a token whose signature verifies, expired or not (never cached): for
    /// telling why an expired token ended.
    pub fn signed_claims(&self, token: &str) -> Option<Claims> {
        self.verify_uncached(token, i64::MIN).ok()
    }

    /// Full verification, without the cache.
    pub fn verify_uncached(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let key = if self.by_kid.is_empty() {
            &self.decoding
        } else {
            let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
            match header.kid {
                None => &self.decoding,
                Some(kid) => self
                    .by_kid
                    .iter()
                    .find(|(k, _)| *k == kid)
                    .map(|(_, key)| key)
                    .ok_or(TokenError::InvalidSignature)?,
            }
        };
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::InvalidSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                        TokenError::InvalidAlgorithm
                    }
                    _ => TokenError::Malformed,
                }
            })?;
        if data.claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(exp: i64) -> Claims {
        Claims {
            user_id: "u1".into(),
            email: "a@b.c".into(),
            customer_id: "cus_1".into(),
            account_type: AccountType::User,
            session_id: "s1".into(),
            iat: 1_000,
            exp,
            session_start: None,
        }
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn round_trip() {
        let keys = JwtKeys::new(SECRET);
        let token = keys.issue(&claims(2_000)).unwrap();
        assert_eq!(keys.verify(&token, 1_500).unwrap().claims, claims(2_000));
        // Second use comes from the cache, and expiry still applies to it.
        assert_eq!(keys.verify(&token, 1_600).unwrap().claims, claims(2_000));
        assert!(matches!(
            keys.verify(&token, 2_000),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn a_full_cache_evicts_some_tokens_not_all() {
        let keys = JwtKeys::new(SECRET);
        let tokens: Vec<String> = (0..MAX_CACHED_TOKENS as i64 + 1000)
            .map(|i| keys.issue(&claims(10_000 + i)).unwrap())
            .collect();
        for t in &tokens {
            keys.verify(t, 1_500).unwrap();
        }
        let remembered = tokens
            .iter()
            .filter(|t| {
                let key = keys.hasher.hash_one(t.as_str());
                keys.verified.get(&key).is_some()
            })
            .count();
        assert!(remembered > MAX_CACHED_TOKENS / 2, "{remembered}");
        assert!(remembered <= MAX_CACHED_TOKENS, "{remembered}");
    }

    #[test]
    fn cached_headers_match_the_claims() {
        let keys = JwtKeys::new(SECRET);
        let v = keys
            .verify(&keys.issue(&claims(2_000)).unwrap(), 1_500)
            .unwrap();
        assert_eq!(v.header_values[0], "u1");
        assert_eq!(v.header_values[2], "user");
        assert_eq!(v.header_values[3], "s1");
    }

    #[test]
    fn expiry_uses_given_time() {
        let keys = JwtKeys::new(SECRET);
        let token = keys.issue(&claims(2_000)).unwrap();
        assert!(matches!(
            keys.verify(&token, 2_000),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn other_key_is_bad_signature() {
        let token = JwtKeys::new(b"another-secret-another-secret-xx")
            .issue(&claims(2_000))
            .unwrap();
        assert!(matches!(
            JwtKeys::new(SECRET).verify(&token, 1_500),
            Err(TokenError::InvalidSignature)
        ));
    }

    #[test]
    fn tampered_payload_is_bad_signature() {
        let keys = JwtKeys::new(SECRET);
        let token = keys.issue(&claims(2_000)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged = claims(2_000);
        forged.account_type = AccountType::Super;
        let payload = b64(&serde_json::to_string(&forged).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
        assert!(matches!(
            keys.verify(&tampered, 1_500),
            Err(TokenError::InvalidSignature)
        ));
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = JwtKeys::new(SECRET);
        let header = b64(r#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(&serde_json::to_string(&claims(2_000)).unwrap());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let err = keys.verify(&token, 1_500).unwrap_err();
            assert!(
                matches!(err, TokenError::Malformed | TokenError::InvalidAlgorithm),
                "{err:?}"
            );
        }
    }

    #[test]
    fn other_hmac_algorithm_is_refused() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(2_000),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(matches!(
            JwtKeys::new(SECRET).verify(&token, 1_500),
            Err(TokenError::InvalidAlgorithm)
        ));
    }

    fn key(kid: &str, secret: &str) -> TokenKey {
        TokenKey {
            kid: kid.into(),
            secret: secret.as_bytes().to_vec(),
        }
    }

    #[test]
    fn keys_rotate_by_kid() {
        let old = JwtKeys::new(SECRET);
        let legacy = old.issue(&claims(2_000)).unwrap();
        let k1 = key("k1", "key-one-key-one-key-one-key-one-1");
        let k2 = key("k2", "key-two-key-two-key-two-key-two-2");

        let v1 = JwtKeys::with_keys(SECRET, std::slice::from_ref(&k1));
        let t1 = v1.issue(&claims(2_000)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t1).unwrap().kid.as_deref(),
            Some("k1")
        );
        assert!(v1.verify(&legacy, 1_500).is_ok(), "no kid: token.secret");

        // k2 is added in front: new tokens carry k2, k1's still verify.
        let v2 = JwtKeys::with_keys(SECRET, &[k2.clone(), k1.clone()]);
        let t2 = v2.issue(&claims(2_000)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&t2).unwrap().kid.as_deref(),
            Some("k2")
        );
        assert!(v2.verify(&t1, 1_500).is_ok());
        assert!(v2.verify(&t2, 1_500).is_ok());
        assert!(v2.verify(&legacy, 1_500).is_ok());

        // k1 removed: its tokens are refused, an unknown kid like a bad signature.
        let v3 = JwtKeys::with_keys(SECRET, &[k2]);
        assert!(matches!(
            v3.verify(&t1, 1_500),
            Err(TokenError::InvalidSignature)
        ));
        assert!(v3.verify(&t2, 1_500).is_ok());

        // A kid naming a key does not make another key's signature valid.
        let forged = {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("k2".into());
            jsonwebtoken::encode(&header, &claims(2_000), &EncodingKey::from_secret(SECRET))
                .unwrap()
        };
        assert!(matches!(
            v3.verify(&forged, 1_500),
            Err(TokenError::InvalidSignature)
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        let keys = JwtKeys::new(SECRET);
        for t in ["", "abc", "a.b.c", "....", "eyJ.eyJ.sig"] {
            assert!(
                matches!(keys.verify(t, 0), Err(TokenError::Malformed)),
                "{t}"
            );
        }
    }
}
