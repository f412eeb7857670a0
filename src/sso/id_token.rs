//! The ID token checks of OpenID Connect Core 1.0, section 3.1.3.7, and RFC 9700: signature
//! with a pinned algorithm, `iss` exactly, `aud` and `azp`, `exp` and `iat` within a leeway,
//! and the `nonce` of the login.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::SsoError;
use super::provider::Provider;

/// What the gateway reads from a checked ID token.
#[derive(Debug, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Only JSON `true` counts as verified.
    #[serde(default)]
    pub email_verified: Option<Value>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    // Checked here, not used after.
    #[serde(default)]
    iss: Value,
    #[serde(default)]
    aud: Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
}

impl IdClaims {
    pub fn email_verified(&self) -> bool {
        self.email_verified == Some(Value::Bool(true))
    }
}

/// The protected header, read before any key is chosen.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

fn failed(why: &'static str) -> SsoError {
    SsoError::Failed(why)
}

/// The algorithm and key id the token claims, refused unless the algorithm is allowed.
fn header(token: &str, allowed: &[Algorithm]) -> Result<(Algorithm, Option<String>), SsoError> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(failed("ID token malformed"));
    };
    let raw = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| failed("ID token malformed"))?;
    let header: RawHeader =
        serde_json::from_slice(&raw).map_err(|_| failed("ID token malformed"))?;
    // Extensions the gateway does not understand must not be ignored (RFC 7515, 4.1.11).
    if header.crit.is_some() {
        return Err(failed("ID token uses critical header extensions"));
    }
    let alg: Algorithm = header
        .alg
        .parse()
        .map_err(|_| failed("ID token algorithm not allowed"))?;
    if !allowed.contains(&alg) {
        return Err(failed("ID token algorithm not allowed"));
    }
    Ok((alg, header.kid))
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Check `token` from `provider` for the login that expected `nonce`, at `now`.
pub async fn check(
    http: &reqwest::Client,
    provider: &Provider,
    token: &str,
    nonce: &str,
    leeway_secs: u64,
    now: i64,
) -> Result<IdClaims, SsoError> {
    let settings = &provider.settings;
    let (alg, kid) = header(token, &settings.allowed_algs)?;
    // HS* only when configured, and then keyed with the client secret, never with a JWKS key.
    let keys = if is_hmac(alg) {
        vec![DecodingKey::from_secret(settings.client_secret.as_bytes())]
    } else {
        provider.keys_for(http, kid.as_deref(), alg).await?
    };
    if keys.is_empty() {
        return Err(failed("ID token signing key unknown"));
    }

    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    validation.leeway = leeway_secs;
    validation.validate_nbf = true;
    validation.set_issuer(&[settings.issuer.as_str()]);
    validation.set_audience(&[settings.client_id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

    let mut outcome = Err(failed("ID token signature invalid"));
    for key in &keys {
        outcome = jsonwebtoken::decode::<IdClaims>(token, key, &validation).map_err(map_error);
        match &outcome {
            Err(SsoError::Failed("ID token signature invalid")) => continue,
            _ => break,
        }
    }
    let claims = outcome?.claims;
    check_claims(&claims, settings, nonce, leeway_secs, now)?;
    Ok(claims)
}

fn map_error(e: jsonwebtoken::errors::Error) -> SsoError {
    failed(match e.kind() {
        ErrorKind::InvalidSignature => "ID token signature invalid",
        ErrorKind::ExpiredSignature => "ID token expired",
        ErrorKind::ImmatureSignature => "ID token not yet valid",
        ErrorKind::InvalidIssuer => "ID token issuer mismatch",
        ErrorKind::InvalidAudience => "ID token audience mismatch",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "ID token algorithm not allowed"
        }
        ErrorKind::MissingRequiredClaim(_) => "ID token lacks a required claim",
        ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey => {
            "ID token signing key unusable"
        }
        _ => "ID token malformed",
    })
}

/// What the library does not check, or checks more loosely than OpenID Connect asks.
fn check_claims(
    claims: &IdClaims,
    settings: &crate::config::ProviderSettings,
    nonce: &str,
    leeway_secs: u64,
    now: i64,
) -> Result<(), SsoError> {
    // `iss` is one string, exactly the issuer (the library also accepts an array holding it).
    if claims.iss.as_str() != Some(settings.issuer.as_str()) {
        return Err(failed("ID token issuer mismatch"));
    }
    // Several audiences: `azp` must name this client. `azp` present: it must be this client.
    let several = claims.aud.as_array().is_some_and(|a| a.len() > 1);
    match claims.azp.as_deref() {
        Some(azp) if azp != settings.client_id => {
            return Err(failed("ID token azp mismatch"));
        }
        None if several => return Err(failed("ID token azp missing for several audiences")),
        _ => {}
    }
    let leeway = i64::try_from(leeway_secs).unwrap_or(i64::MAX);
    match claims.iat {
        None => return Err(failed("ID token lacks a required claim")),
        Some(iat) if iat > now.saturating_add(leeway) => {
            return Err(failed("ID token issued in the future"));
        }
        Some(_) => {}
    }
    let matches = claims
        .nonce
        .as_deref()
        .is_some_and(|n| crate::mfa::same_hash(n, nonce));
    if !matches {
        return Err(failed("ID token nonce mismatch"));
    }
    if claims.sub.is_empty() || claims.sub.len() > 255 {
        return Err(failed("ID token subject invalid"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_header(json: &str) -> String {
        format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn header_pins_the_algorithm() {
        let allowed = [Algorithm::RS256];
        let ok = header(&encode_header(r#"{"alg":"RS256","kid":"k1"}"#), &allowed).unwrap();
        assert_eq!(ok, (Algorithm::RS256, Some("k1".into())));
        for bad in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS256"}"#,
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"RS256","crit":["exp"]}"#,
            r#"{"kid":"k1"}"#,
            "not json",
        ] {
            assert!(header(&encode_header(bad), &allowed).is_err(), "{bad}");
        }
        assert!(header("a.b", &allowed).is_err());
        assert!(header("a.b.c.d", &allowed).is_err());
    }

    fn settings() -> crate::config::ProviderSettings {
        crate::config::ProviderSettings {
            name: "t".into(),
            issuer: "https://idp.example".into(),
            client_id: "app".into(),
            client_secret: "s".into(),
            redirect_uri: "https://app.example/cb".into(),
            scopes: vec!["openid".into()],
            allowed_algs: vec![Algorithm::RS256],
            email_domains: None,
            auto_provision: None,
        }
    }

    fn claims(extra: Value) -> IdClaims {
        let mut base = serde_json::json!({
            "sub": "s1", "iss": "https://idp.example", "aud": "app", "iat": 1000, "nonce": "n1"
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn claims_beyond_the_library() {
        let s = settings();
        let check = |c: IdClaims| check_claims(&c, &s, "n1", 60, 1000);
        assert!(check(claims(serde_json::json!({}))).is_ok());
        let refused = [
            serde_json::json!({"iss": ["https://idp.example"]}),
            serde_json::json!({"aud": ["app", "other"]}),
            serde_json::json!({"aud": ["app", "other"], "azp": "other"}),
            serde_json::json!({"azp": "other"}),
            serde_json::json!({"iat": 1061}),
            serde_json::json!({"iat": null}),
            serde_json::json!({"nonce": "n2"}),
            serde_json::json!({"nonce": null}),
            serde_json::json!({"sub": ""}),
        ];
        for extra in refused {
            assert!(check(claims(extra.clone())).is_err(), "{extra}");
        }
        assert!(
            check(claims(
                serde_json::json!({"aud": ["app", "other"], "azp": "app"})
            ))
            .is_ok()
        );
        assert!(check(claims(serde_json::json!({"iat": 1060}))).is_ok());
    }

    #[test]
    fn only_boolean_true_verifies_an_email() {
        assert!(claims(serde_json::json!({"email_verified": true})).email_verified());
        assert!(!claims(serde_json::json!({"email_verified": "true"})).email_verified());
        assert!(!claims(serde_json::json!({"email_verified": false})).email_verified());
        assert!(!claims(serde_json::json!({})).email_verified());
    }
}
