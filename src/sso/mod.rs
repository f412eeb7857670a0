//! Single sign-on: the gateway as an OpenID Connect relying party. `start` sends a browser to a
//! provider with a fresh state, nonce and PKCE verifier kept server-side; `finish` takes the
//! code the browser brought back, exchanges it, checks the ID token and finds the user.
//!
//! `provider` owns discovery and keys, `id_token` the token checks, `link` the mapping of a
//! provider's account to a user.

pub mod id_token;
pub mod link;
pub mod provider;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use self::id_token::IdClaims;
use self::provider::{ClientAuth, Provider, describe, read_limited};
use crate::config::SsoSettings;
use crate::model::PendingLogin;
use crate::store::{Claim, LoginStore};

/// Every way single sign-on fails; `error::GatewayError` maps them to statuses.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// A start request named no configured provider.
    #[error("unknown identity provider")]
    UnknownProvider,
    /// A start link's path named no configured provider.
    #[error("unknown identity provider in the path")]
    NoSuchProvider,
    /// A check failed; the text says which, and never holds a token, code or secret.
    #[error("SSO failed: {0}")]
    Failed(&'static str),
    /// The identity is valid but no user may sign in with it.
    #[error("no account for this identity")]
    NoAccount,
    /// The provider could not be reached within its deadline, or answered nonsense.
    #[error("identity provider {provider} unavailable: {reason}")]
    Unavailable { provider: String, reason: String },
}

/// The configured providers and the HTTP client that talks to them.
pub struct Sso {
    providers: Vec<Arc<Provider>>,
    http: reqwest::Client,
    settings: SsoSettings,
}

/// A login sent to its provider: where the browser goes, and the cookie that binds the login
/// to that browser.
pub struct Started {
    pub url: String,
    pub binding: String,
}

/// A login that came back with a valid ID token.
pub struct Finished {
    pub provider: Arc<Provider>,
    pub claims: IdClaims,
}

/// 32 bytes from the operating system's CSPRNG, base64url: 43 characters.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn is_random_token(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How secrets are kept server-side and compared: SHA-256, hex.
fn digest(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

impl Sso {
    /// The providers of `settings`. From `previous` (the configuration before a reload), the
    /// HTTP client and every provider whose settings did not change are kept, with their
    /// documents, keys and reachability.
    pub fn new(settings: &SsoSettings, previous: Option<&Sso>) -> Result<Sso, reqwest::Error> {
        let http = match previous.filter(|p| p.settings.http_timeout == settings.http_timeout) {
            Some(p) => p.http.clone(),
            None => Self::client(settings.http_timeout)?,
        };
        let providers = settings
            .providers
            .iter()
            .map(|p| {
                previous
                    .and_then(|old| old.providers.iter().find(|o| o.settings == *p))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Provider::new(p.clone())))
            })
            .collect();
        Ok(Sso {
            providers,
            http,
            settings: settings.clone(),
        })
    }

    fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        // Back-channel calls follow no redirect, and each has the configured deadline. Idle
        // connections are dropped after a second: calls are rare (a login, a key refresh), and
        // a connection the provider is closing must not be picked for the code exchange, which
        // cannot be retried.
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(1))
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn provider(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// Begin a login at `provider_name`. `cookie` is the browser's binding cookie, when it
    /// has one: it is kept, so logins started in several tabs can all finish.
    pub async fn start(
        &self,
        logins: &dyn LoginStore,
        provider_name: &str,
        cookie: Option<&str>,
        now: i64,
    ) -> Result<Started, crate::error::GatewayError> {
        let provider = self
            .provider(provider_name)
            .ok_or(SsoError::UnknownProvider)?;
        let discovery = provider.discovery(&self.http).await?;
        let settings = &provider.settings;
        let binding = match cookie {
            Some(c) if is_random_token(c) => c.to_owned(),
            _ => random_token(),
        };
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let ttl = i64::try_from(self.settings.state_ttl.as_secs()).unwrap_or(i64::MAX);
        logins
            .put_login(
                &digest(&state),
                PendingLogin {
                    provider: settings.name.clone(),
                    nonce: nonce.clone(),
                    verifier,
                    binding: digest(&binding),
                    expires_at: now.saturating_add(ttl),
                },
            )
            .await?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &settings.client_id)
            .append_pair("redirect_uri", &settings.redirect_uri)
            .append_pair("scope", &settings.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .finish();
        let endpoint = &discovery.authorization_endpoint;
        let separator = if endpoint.contains('?') { '&' } else { '?' };
        Ok(Started {
            url: format!("{endpoint}{separator}{query}"),
            binding,
        })
    }

    /// Finish a login: the state once, from the browser that started it, then the code
    /// exchange and the ID token checks.
    pub async fn finish(
        &self,
        logins: &dyn LoginStore,
        code: &str,
        state: &str,
        iss: Option<&str>,
        cookie: Option<&str>,
        now: i64,
    ) -> Result<Finished, crate::error::GatewayError> {
        let refused = |why: &'static str| {
            tracing::info!("single sign-on refused: {why}");
            SsoError::Failed(why)
        };
        let binding = cookie.filter(|c| is_random_token(c)).map(digest);
        let Some(binding) = binding else {
            return Err(refused("state was issued to another browser").into());
        };
        let login = match logins.take_login(&digest(state), &binding, now).await? {
            Claim::Taken(login) => login,
            Claim::OtherBrowser => {
                return Err(refused("state was issued to another browser").into());
            }
            Claim::Unknown => return Err(refused("state unknown, expired or already used").into()),
        };
        let provider = self.provider(&login.provider).ok_or(SsoError::Failed(
            "the provider of this login is no longer configured",
        ))?;
        let claims = self
            .complete(provider, &login, code, iss, now)
            .await
            .inspect_err(|e| {
                if let SsoError::Failed(why) = e {
                    tracing::info!(provider = %provider.name(), "single sign-on refused: {why}");
                }
            })?;
        Ok(Finished {
            provider: Arc::clone(provider),
            claims,
        })
    }

    /// The login's provider is known: its `iss`, the code exchange, the ID token.
    async fn complete(
        &self,
        provider: &Provider,
        login: &PendingLogin,
        code: &str,
        iss: Option<&str>,
        now: i64,
    ) -> Result<IdClaims, SsoError> {
        // RFC 9207: an authorization response that names its issuer must name this one.
        if iss.is_some_and(|i| i != provider.settings.issuer) {
            return Err(SsoError::Failed("iss does not match the provider"));
        }
        let id_token = self.exchange(provider, code, &login.verifier).await?;
        id_token::check(
            &self.http,
            provider,
            &id_token,
            &login.nonce,
            self.settings.leeway.as_secs(),
            now,
        )
        .await
    }

    /// Trade the code for tokens at the provider's token endpoint, with the PKCE verifier and
    /// the client's credentials. Returns the ID token.
    async fn exchange(
        &self,
        provider: &Provider,
        code: &str,
        verifier: &str,
    ) -> Result<String, SsoError> {
        let discovery = provider.discovery(&self.http).await?;
        let settings = &provider.settings;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", settings.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self
            .http
            .post(&discovery.token_endpoint)
            .header(reqwest::header::ACCEPT, "application/json");
        match discovery.client_auth {
            ClientAuth::Basic => {
                // RFC 6749, 2.3.1: each part form-encoded before Basic encoding.
                let encode =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let credentials = format!(
                    "{}:{}",
                    encode(&settings.client_id),
                    encode(&settings.client_secret)
                );
                let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
                request = request.header(reqwest::header::AUTHORIZATION, format!("Basic {basic}"));
            }
            ClientAuth::Post => {
                form.push(("client_id", settings.client_id.as_str()));
                form.push(("client_secret", settings.client_secret.as_str()));
            }
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = request
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                provider.answered(false);
                provider.unavailable(&describe(&e))
            })?;
        let status = response.status();
        if status.is_server_error() {
            provider.answered(false);
            return Err(provider.unavailable(&format!("token endpoint answered {status}")));
        }
        provider.answered(true);
        let body = read_limited(response)
            .await
            .map_err(|why| provider.unavailable(&why))?;
        if !status.is_success() {
            // Only the OAuth error code is logged: the description may echo the request.
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(oauth_error_code))
                .unwrap_or_default();
            tracing::info!(provider = %provider.name(), %status, error, "authorization code refused");
            return Err(SsoError::Failed(
                "the provider refused the authorization code",
            ));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
        }
        // Never the parse error's text: it may quote the response, tokens included.
        let tokens: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| SsoError::Failed("the provider's token response is unreadable"))?;
        tokens
            .id_token
            .ok_or(SsoError::Failed("the provider sent no ID token"))
    }

    /// Keep every provider's documents fresh and its reachability known: a provider that
    /// answers is asked again every `CHECK_EVERY` (its keys every `KEYS_EVERY`); one that does
    /// not is retried after a growing pause (1 s to 30 s). `current` gives the providers in
    /// force, which a reload may change; a provider is tracked by its settings.
    pub async fn refresh_forever(
        current: impl Fn() -> Arc<Sso> + Send + Sync,
        mut shutdown: pingora::server::ShutdownWatch,
    ) {
        const CHECK_EVERY: Duration = Duration::from_secs(30);
        const KEYS_EVERY: Duration = Duration::from_secs(600);
        const MAX_PAUSE: Duration = Duration::from_secs(30);
        const IDLE: Duration = Duration::from_secs(1);
        struct Timer {
            provider: Arc<Provider>,
            due: tokio::time::Instant,
            keys_due: tokio::time::Instant,
            pause: Duration,
        }
        let mut timers: Vec<Timer> = Vec::new();
        loop {
            let sso = current();
            let now = tokio::time::Instant::now();
            // Providers added by a reload start now; removed ones are forgotten.
            timers.retain(|t| sso.providers.iter().any(|p| Arc::ptr_eq(p, &t.provider)));
            for p in &sso.providers {
                if !timers.iter().any(|t| Arc::ptr_eq(p, &t.provider)) {
                    timers.push(Timer {
                        provider: Arc::clone(p),
                        due: now,
                        keys_due: now,
                        pause: Duration::from_secs(1),
                    });
                }
            }
            for t in timers.iter_mut().filter(|t| t.due <= now) {
                let keys = t.keys_due <= now;
                if t.provider.refresh(&sso.http, keys).await {
                    if t.pause > Duration::from_secs(1) {
                        tracing::info!(provider = %t.provider.name(), "identity provider reachable again");
                    }
                    let done = tokio::time::Instant::now();
                    t.pause = Duration::from_secs(1);
                    t.due = done + CHECK_EVERY;
                    if keys {
                        t.keys_due = done + KEYS_EVERY;
                    }
                } else {
                    t.due = tokio::time::Instant::now() + t.pause;
                    t.pause = (t.pause * 2).min(MAX_PAUSE);
                }
            }
            // Wake for the next due provider, or soon to look for providers a reload added.
            let next = timers
                .iter()
                .map(|t| t.due)
                .min()
                .unwrap_or(now + IDLE)
                .min(tokio::time::Instant::now() + IDLE);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

/// An OAuth error code is a short token of printable ASCII (RFC 6749, 5.2); anything else is
/// not repeated.
fn oauth_error_code(code: &str) -> String {
    if code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        code.to_owned()
    } else {
        "unrecognised".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_43_url_safe_characters() {
        let a = random_token();
        assert!(is_random_token(&a), "{a}");
        assert_ne!(a, random_token());
        assert!(!is_random_token("short"));
        assert!(!is_random_token(&format!("{}=", &a[..42])));
    }

    #[test]
    fn pkce_challenge_is_rfc7636_s256() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn oauth_error_codes_are_repeated_only_when_plain() {
        assert_eq!(oauth_error_code("invalid_grant"), "invalid_grant");
        assert_eq!(oauth_error_code("eyJhbGciOi.x.y"), "unrecognised");
    }
}
