//! One OpenID Provider as the gateway knows it: its discovery document and signing keys,
//! fetched with a deadline, cached, fetched again when a token names a key it does not know,
//! and whether it answered lately (for `/readyz`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::SsoError;
use crate::config::ProviderSettings;

/// Refetches of the JWKS for an unknown `kid` are at least this far apart.
pub const KID_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// A provider that just failed is not asked again inline before this much time has passed.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// The largest discovery document, JWKS or token response read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The parts of the discovery document the gateway uses.
#[derive(Debug, Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// How the gateway authenticates itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (the OAuth default).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

#[derive(Debug)]
pub struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub client_auth: ClientAuth,
}

/// A verification key from the provider's JWKS.
pub struct SigningKey {
    pub kid: Option<String>,
    /// The algorithm the JWK is restricted to, when it says.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

pub struct Provider {
    pub settings: ProviderSettings,
    discovery: ArcSwapOption<Discovery>,
    keys: ArcSwapOption<Vec<SigningKey>>,
    /// The last call to the provider got an answer.
    reachable: AtomicBool,
    /// One fetch at a time; holds when the last fetches happened.
    fetching: tokio::sync::Mutex<Fetches>,
}

#[derive(Default)]
struct Fetches {
    failed_at: Option<Instant>,
    kid_refetch_at: Option<Instant>,
}

impl Provider {
    pub fn new(settings: ProviderSettings) -> Provider {
        Provider {
            settings,
            discovery: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            reachable: AtomicBool::new(false),
            fetching: tokio::sync::Mutex::new(Fetches::default()),
        }
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn is_discovered(&self) -> bool {
        self.discovery.load().is_some()
    }

    /// Record whether the provider answered a call (any HTTP answer counts, not a timeout).
    pub fn answered(&self, yes: bool) {
        self.reachable.store(yes, Ordering::Relaxed);
    }

    /// The discovery document, fetched now if it never was or the provider stopped answering
    /// (so logins fail with 502 while it is down, and work again the moment it answers). A
    /// provider that failed less than a second ago fails again at once, so that a dead provider
    /// does not hold every login for the full deadline.
    pub async fn discovery(&self, http: &reqwest::Client) -> Result<Arc<Discovery>, SsoError> {
        let usable = || self.discovery.load_full().filter(|_| self.is_reachable());
        if let Some(d) = usable() {
            return Ok(d);
        }
        let mut fetches = self.fetching.lock().await;
        if let Some(d) = usable() {
            return Ok(d);
        }
        if fetches
            .failed_at
            .is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE)
        {
            return Err(self.unavailable("not reachable"));
        }
        match self.fetch_all(http).await {
            Ok(d) => {
                fetches.failed_at = None;
                Ok(d)
            }
            Err(e) => {
                fetches.failed_at = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Fetch the discovery document and the JWKS, and keep both. Used at start, by the
    /// background refresh, and inline while the provider was never reached.
    pub async fn fetch_all(&self, http: &reqwest::Client) -> Result<Arc<Discovery>, SsoError> {
        let outcome = self.fetch_discovery(http).await;
        let discovery = match outcome {
            Ok(d) => Arc::new(d),
            Err(e) => {
                self.answered(false);
                return Err(e);
            }
        };
        match self.fetch_keys(http, &discovery.jwks_uri).await {
            Ok(keys) => self.keys.store(Some(Arc::new(keys))),
            Err(e) => {
                self.answered(false);
                return Err(e);
            }
        }
        self.discovery.store(Some(Arc::clone(&discovery)));
        self.answered(true);
        Ok(discovery)
    }

    /// Refresh in the background: the discovery document, and the keys too when `keys` is set
    /// or the provider was never reached. Returns whether the provider answered.
    pub async fn refresh(&self, http: &reqwest::Client, keys: bool) -> bool {
        let mut fetches = self.fetching.lock().await;
        let outcome = if keys || !self.is_discovered() {
            self.fetch_all(http).await.map(drop)
        } else {
            self.fetch_discovery(http).await.map(|d| {
                self.discovery.store(Some(Arc::new(d)));
                self.answered(true);
            })
        };
        match outcome {
            Ok(_) => {
                fetches.failed_at = None;
                true
            }
            Err(e) => {
                fetches.failed_at = Some(Instant::now());
                tracing::warn!(provider = %self.name(), "identity provider not refreshed: {e}");
                false
            }
        }
    }

    /// The keys that may have signed a token with this header: the one with its `kid`, or
    /// every key that fits the algorithm when the token names none. A `kid` the cached JWKS
    /// lacks fetches the JWKS again, at most every `KID_REFETCH_INTERVAL` (a caller within
    /// that interval waits for its end), so the provider can rotate keys at any time.
    pub async fn keys_for(
        &self,
        http: &reqwest::Client,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<DecodingKey>, SsoError> {
        let found = self.matching(kid, alg);
        if !found.is_empty() || kid.is_none() {
            return Ok(found);
        }
        let discovery = self.discovery(http).await?;
        let mut fetches = self.fetching.lock().await;
        // Another caller may have fetched the new keys while this one waited for the lock.
        let found = self.matching(kid, alg);
        if !found.is_empty() {
            return Ok(found);
        }
        if let Some(last) = fetches.kid_refetch_at {
            let next = last + KID_REFETCH_INTERVAL;
            tokio::time::sleep_until(next.into()).await;
        }
        fetches.kid_refetch_at = Some(Instant::now());
        match self.fetch_keys(http, &discovery.jwks_uri).await {
            Ok(keys) => {
                tracing::info!(provider = %self.name(), keys = keys.len(), "signing keys fetched again for an unknown key id");
                self.keys.store(Some(Arc::new(keys)));
                self.answered(true);
            }
            Err(e) => {
                self.answered(false);
                return Err(e);
            }
        }
        Ok(self.matching(kid, alg))
    }

    fn matching(&self, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
        let Some(keys) = self.keys.load_full() else {
            return Vec::new();
        };
        keys.iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.alg.is_none_or(|a| a == alg))
            .map(|k| k.key.clone())
            .collect()
    }

    async fn fetch_discovery(&self, http: &reqwest::Client) -> Result<Discovery, SsoError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let body = get(http, &url)
            .await
            .map_err(|why| self.unavailable(&why))?;
        let doc: DiscoveryDocument = serde_json::from_slice(&body)
            .map_err(|e| self.unavailable(&format!("discovery document unreadable: {e}")))?;
        // OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was
        // fetched for, exactly.
        if doc.issuer != self.settings.issuer {
            return Err(self.unavailable(&format!(
                "discovery document names issuer `{}`, not `{}`",
                doc.issuer, self.settings.issuer
            )));
        }
        for (what, url) in [
            ("authorization_endpoint", &doc.authorization_endpoint),
            ("token_endpoint", &doc.token_endpoint),
            ("jwks_uri", &doc.jwks_uri),
        ] {
            if !crate::config::is_provider_url(url) {
                return Err(self.unavailable(&format!(
                    "discovery document's {what} `{url}` is not an https URL"
                )));
            }
        }
        let client_auth = match &doc.token_endpoint_auth_methods_supported {
            Some(methods)
                if !methods.iter().any(|m| m == "client_secret_basic")
                    && methods.iter().any(|m| m == "client_secret_post") =>
            {
                ClientAuth::Post
            }
            _ => ClientAuth::Basic,
        };
        Ok(Discovery {
            authorization_endpoint: doc.authorization_endpoint,
            token_endpoint: doc.token_endpoint,
            jwks_uri: doc.jwks_uri,
            client_auth,
        })
    }

    async fn fetch_keys(
        &self,
        http: &reqwest::Client,
        jwks_uri: &str,
    ) -> Result<Vec<SigningKey>, SsoError> {
        let body = get(http, jwks_uri)
            .await
            .map_err(|why| self.unavailable(&why))?;
        let keys = parse_jwks(&body).map_err(|why| self.unavailable(&why))?;
        Ok(keys)
    }

    pub fn unavailable(&self, reason: &str) -> SsoError {
        SsoError::Unavailable {
            provider: self.settings.name.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// The signature keys of a JWKS. Keys the gateway cannot use (encryption keys, unknown key
/// types) are skipped rather than failing the whole set.
fn parse_jwks(body: &[u8]) -> Result<Vec<SigningKey>, String> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("JWKS unreadable: {e}"))?;
    let mut keys = Vec::new();
    for raw in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            continue;
        }
        // Symmetric keys never come from a JWKS: HS* tokens are checked with the client secret.
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match key_algorithm(a) {
                Some(a) => Some(a),
                None => continue,
            },
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.push(SigningKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    Ok(keys)
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// GET a JSON document from the provider. The reason of a failure names the URL and what went
/// wrong, never a body.
async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let send = || {
        http.get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
    };
    // A GET is safe to repeat: once, when the connection failed without a timeout (a kept-alive
    // connection the provider closed just then, say).
    let resp = match send().await {
        Err(e) if !e.is_timeout() && (e.is_connect() || e.is_request()) => send().await,
        other => other,
    }
    .map_err(|e| describe(&e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    read_limited(resp).await
}

/// The body, at most `MAX_RESPONSE_BYTES`.
pub async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let url = resp.url().to_string();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!("{url} sent more than {MAX_RESPONSE_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error as one line: what failed and where (the URL has no secret in it; the
/// query never carries one on these calls).
pub fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirected"
    } else if e.is_body() || e.is_decode() {
        "answer unreadable"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!("{} {what}", without_query(url.as_str())),
        None => what.to_owned(),
    }
}

fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_skips_unusable_keys() {
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "use": "sig", "alg": "RS256",
             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
             "e": "AQAB"},
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "XYZ", "kid": "odd"}
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert_eq!(keys[0].alg, Some(Algorithm::RS256));
    }

    #[test]
    fn urls_in_reasons_lose_their_query() {
        assert_eq!(
            without_query("https://idp.example/token?code=secret"),
            "https://idp.example/token"
        );
    }
}
