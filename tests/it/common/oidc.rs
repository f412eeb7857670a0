//! Single sign-on harness: a real OpenID Provider (`tests/oidc/provider.mjs`, oidc-provider on
//! Node) on a free loopback port, a driver that plays the provider side of the browser, and a
//! small "browser" for the gateway side that keeps the binding cookie by hand.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use url::Url;

use super::*;

/// The provider's name in the gateway configuration.
pub const PROVIDER: &str = "test";
pub const CLIENT_ID: &str = "authgate";
pub const CLIENT_SECRET: &str = "authgate-test-secret-0123456789abcdef";
/// The single-page app's page the provider sends the browser back to. Nothing listens there:
/// the login driver stops at the redirect and reads the parameters.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/app/sso";
/// The browser-binding cookie's name (`sso.binding_cookie`, default).
pub const BINDING_COOKIE: &str = "authgate_sso";
/// `email_domains` of the usual test provider.
pub const DOMAINS: &str = "email_domains = [\"mydomain.com\"]\n";

/// Provider accounts (their `sub`) of [`provider_config`].
pub mod account {
    /// john.doe@mydomain.com, verified: the sample user.
    pub const JOHN: &str = "john";
    /// The sample user's email in other letter case, verified.
    pub const JOHN_UPPER: &str = "john-upper";
    /// The sample user's email, NOT verified by the provider.
    pub const UNVERIFIED: &str = "unverified";
    /// A verified email in a domain outside `email_domains` (a user with it exists).
    pub const OUTSIDER: &str = "outsider";
    /// A verified email in an allowed domain that matches no user.
    pub const STRANGER: &str = "stranger";
    /// `john.doe@mydomain.com@evil.test`, verified.
    pub const TWO_AT: &str = "two-at";
    /// The sample user's email with a Cyrillic `о`, verified.
    pub const LOOKALIKE: &str = "lookalike";
    /// A verified email of an allowed domain, for auto-provisioning.
    pub const NEWCOMER: &str = "newcomer";
}

pub const OUTSIDER_EMAIL: &str = "guest@elsewhere.test";
pub const STRANGER_EMAIL: &str = "nobody@mydomain.com";
pub const NEWCOMER_EMAIL: &str = "new.person@mydomain.com";

/// The provider configuration most tests use: one `client_secret_basic` client registered with
/// [`REDIRECT_URI`], and the accounts of [`account`].
pub fn provider_config() -> Value {
    let acct = |sub: &str, email: &str, verified: bool, name: &str| json!({"sub": sub, "email": email, "email_verified": verified, "name": name});
    json!({
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_basic",
        }],
        "accounts": [
            acct(account::JOHN, EMAIL, true, "John Doe"),
            acct(account::JOHN_UPPER, "John.Doe@MyDomain.COM", true, "John Doe"),
            acct(account::UNVERIFIED, EMAIL, false, "John Doe"),
            acct(account::OUTSIDER, OUTSIDER_EMAIL, true, "Guest"),
            acct(account::STRANGER, STRANGER_EMAIL, true, "No Body"),
            acct(account::TWO_AT, "john.doe@mydomain.com@evil.test", true, "Evil"),
            acct(account::LOOKALIKE, "j\u{043e}hn.doe@mydomain.com", true, "Look Alike"),
            acct(account::NEWCOMER, NEWCOMER_EMAIL, true, "New Person"),
        ],
        "default_account": account::JOHN,
    })
}

/// The gateway's `[sso]` section with one `[[sso.providers]]` named [`PROVIDER`] for `issuer`.
/// `sso_extra` goes into `[sso]`, `provider_extra` into the provider table (for example
/// [`DOMAINS`] or an `auto_provision`). Ends inside the provider table: append other sections
/// before it, not after.
pub fn sso_toml(issuer: &str, provider_extra: &str, sso_extra: &str) -> String {
    format!(
        "[sso]\n{sso_extra}\n\
         [[sso.providers]]\nname = \"{PROVIDER}\"\nissuer = \"{issuer}\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         redirect_uri = \"{REDIRECT_URI}\"\nscopes = [\"openid\", \"email\", \"profile\"]\n\
         allowed_algs = [\"RS256\"]\n{provider_extra}\n"
    )
}

/// Gateway options for single sign-on against `issuer`, with the credential limit raised so
/// that only the test that is about it meets it.
pub fn sso_options(issuer: &str, provider_extra: &str) -> Options {
    Options {
        rate_limit_section: "[rate_limit]\nauth_per_minute = 1000\n".into(),
        extra_toml: sso_toml(issuer, provider_extra, ""),
        ..Options::default()
    }
}

/// Wait (with a deadline) until `/readyz` reports `want` for the provider; returns the body.
pub async fn wait_provider_status(gw: &Gateway, want: &str, limit: Duration) -> Value {
    let start = Instant::now();
    loop {
        let a = admin_get(gw, "/readyz").await;
        if a.json["sso"][PROVIDER] == want {
            return a.json;
        }
        assert!(
            start.elapsed() < limit,
            "/readyz did not report the provider as {want:?} within {limit:?}: {} {}",
            a.status,
            a.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gateway for `provider` that has already fetched the provider's discovery document.
pub async fn sso_gateway(upstream: &Upstream, provider: &OidcProvider, opts: Options) -> Gateway {
    let gw = Gateway::start(upstream, opts);
    let start = Instant::now();
    loop {
        let a = admin_get(&gw, "/readyz").await;
        if a.json["sso"][PROVIDER] == "up" {
            return gw;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "/readyz does not report the provider at {} as up: {} {}\n--- gateway log\n{}\n--- provider log\n{}",
            provider.issuer,
            a.status,
            a.text,
            gw.log(),
            provider.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------------------------------------
// The provider

/// `npm ci` in tests/oidc, once per test process, when its packages are not installed.
fn ensure_node_modules() {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if *done {
        return;
    }
    let dir = repo_path("tests/oidc");
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "the single sign-on tests need Node 20+ and npm: running `npm ci` in {} failed: {e}",
                    dir.display()
                )
            });
        assert!(
            out.status.success(),
            "`npm ci` in {} failed ({}); the single sign-on tests need its packages:\n{}\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    *done = true;
}

/// One `node tests/oidc/provider.mjs` process. Dropping it kills the process.
pub struct OidcProvider {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub issuer: String,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Where the provider sent the browser back: the parameters of the redirect to the
/// `redirect_uri`.
#[derive(Debug, Clone)]
pub struct AuthResponse {
    pub location: Url,
    pub code: String,
    pub state: String,
    pub iss: Option<String>,
}

impl OidcProvider {
    /// Start a provider on a free port with `config` (see tests/oidc/README.md).
    pub fn start(config: Value) -> OidcProvider {
        Self::spawn(config, 0)
    }

    /// Start a provider on `port`, for a gateway that was configured with it beforehand.
    pub fn start_on(config: Value, port: u16) -> OidcProvider {
        Self::spawn(config, port)
    }

    fn spawn(config: Value, port: u16) -> OidcProvider {
        ensure_node_modules();
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("provider.json");
        std::fs::write(&config_path, config.to_string()).expect("write provider config");
        let log = std::fs::File::create(dir.path().join("provider.log")).expect("provider log");
        let mut child = Command::new("node")
            .arg(repo_path("tests/oidc/provider.mjs"))
            .env("PORT", port.to_string())
            .env("OIDC_CONFIG", &config_path)
            .env("OIDC_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("the single sign-on tests need Node 20+ (node): {e}"));
        let stdout = child.stdout.take().expect("provider stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Keep reading until the process ends: a closed pipe would fail its next write.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = Vec::new();
            while matches!(lines.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let _ = tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
                line.clear();
            }
        });
        let mut provider = OidcProvider {
            issuer: String::new(),
            port: 0,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "the OpenID Provider did not print READY within 20 s:\n{}",
                    provider.log()
                );
            }
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        let issuer = issuer.trim().to_string();
                        provider.port = Url::parse(&issuer)
                            .ok()
                            .and_then(|u| u.port())
                            .unwrap_or_else(|| panic!("READY line without a port: {line}"));
                        provider.issuer = issuer;
                        return provider;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = provider.child.as_mut().and_then(|c| c.wait().ok());
                    panic!(
                        "the OpenID Provider exited before READY ({status:?}):\n{}",
                        provider.log()
                    );
                }
            }
        }
    }

    /// What the provider wrote on stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Stop the provider now ("provider down").
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn test_call(&self, req: reqwest::RequestBuilder, what: &str) -> Value {
        let a = read(req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"))).await;
        assert_eq!(a.status, 200, "{what}: {}", a.text);
        a.json
    }

    /// A new signing key becomes the active one; with `drop_old`, the old keys leave the JWKS.
    pub async fn rotate_keys(&self, drop_old: bool) -> Value {
        let req = client()
            .post(self.url("/test/rotate-keys"))
            .json(&json!({"drop_old": drop_old}));
        self.test_call(req, "POST /test/rotate-keys").await
    }

    /// `{active_kid, published_kids}`.
    pub async fn keys(&self) -> Value {
        self.test_call(client().get(self.url("/test/keys")), "GET /test/keys")
            .await
    }

    /// Rewrite the ID token of the next successful token response (see tests/oidc/README.md).
    pub async fn next_id_token(&self, spec: Value) {
        let req = client().post(self.url("/test/next-id-token")).json(&spec);
        self.test_call(req, "POST /test/next-id-token").await;
    }

    /// The next login (without `login_hint`) is as `account`.
    pub async fn queue_login(&self, account: &str) {
        let req = client()
            .get(self.url("/test/login"))
            .query(&[("account", account)]);
        self.test_call(req, "GET /test/login").await;
    }

    /// Play the browser at the provider: open the authorization URL `auth_url` with a fresh
    /// cookie jar, follow the provider's redirects while they stay on the provider, and return
    /// the parameters of the redirect to the `redirect_uri`. With `account`, a `login_hint`
    /// chooses who logs in; otherwise a queued login or the default account does.
    pub async fn authorize(&self, auth_url: &str, account: Option<&str>) -> AuthResponse {
        let origin = Url::parse(&self.issuer).expect("issuer").origin();
        let mut url = Url::parse(auth_url).unwrap_or_else(|e| panic!("{auth_url}: {e}"));
        if let Some(account) = account {
            url.query_pairs_mut().append_pair("login_hint", account);
        }
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        for _ in 0..10 {
            assert_eq!(
                url.origin(),
                origin,
                "the login left the provider before the redirect_uri: {url}"
            );
            let resp = browser
                .get(url.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            let status = resp.status();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let body = resp.text().await.unwrap_or_default();
                panic!(
                    "the provider answered {status} to {url}: {body}\n{}",
                    self.log()
                );
            };
            let next = url
                .join(&location)
                .unwrap_or_else(|e| panic!("bad Location {location}: {e}"));
            if next.origin() != origin {
                return AuthResponse::from_redirect(next);
            }
            url = next;
        }
        panic!("more than 10 redirects at the provider for {auth_url}");
    }
}

impl AuthResponse {
    fn from_redirect(location: Url) -> AuthResponse {
        let get = |name: &str| {
            location
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        assert!(
            location.as_str().starts_with(REDIRECT_URI),
            "the provider redirected elsewhere than the redirect_uri: {location}"
        );
        let (Some(code), Some(state)) = (get("code"), get("state")) else {
            panic!("no code and state in the provider's answer: {location}");
        };
        AuthResponse {
            code,
            state,
            iss: get("iss"),
            location,
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.kill();
    }
}

// ------------------------------------------------------------------------------------------
// The gateway side of the browser

/// The value of the binding cookie set by an answer, if any.
pub fn binding_cookie(a: &Answer) -> Option<String> {
    set_cookie_line(a).and_then(|line| {
        line.split(';')
            .next()
            .and_then(|kv| kv.trim().split_once('='))
            .map(|(_, v)| v.to_string())
    })
}

/// The whole `Set-Cookie` line for the binding cookie, if any.
pub fn set_cookie_line(a: &Answer) -> Option<String> {
    let prefix = format!("{BINDING_COOKIE}=");
    a.headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.trim_start().starts_with(&prefix))
        .map(str::to_string)
}

/// A client that does not follow redirects.
pub fn no_redirect_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `POST /api/auth/sso/start` for `provider`, sending the binding cookie when given.
pub async fn sso_start_raw(gw: &Gateway, provider: &str, cookie: Option<&str>) -> Answer {
    let mut req = client()
        .post(gw.url("/api/auth/sso/start"))
        .json(&json!({"provider": provider}));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{BINDING_COOKIE}={c}"));
    }
    read(req.send().await.expect("sso start")).await
}

/// Start a login in a new browser: returns the authorization URL and the binding cookie.
pub async fn sso_start(gw: &Gateway, provider: &str) -> (String, String) {
    sso_start_in(gw, provider, None).await
}

/// Start a login in a browser that may already hold a binding cookie.
pub async fn sso_start_in(gw: &Gateway, provider: &str, cookie: Option<&str>) -> (String, String) {
    let a = sso_start_raw(gw, provider, cookie).await;
    assert_eq!(a.status, 200, "sso start: {}", a.text);
    let url = a.json["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no url in {}", a.text))
        .to_string();
    let cookie = binding_cookie(&a)
        .unwrap_or_else(|| panic!("no {BINDING_COOKIE} cookie set by start: {:?}", a.headers));
    (url, cookie)
}

/// `POST /api/auth/sso_callback` with `body`, sending the binding cookie when given.
pub async fn sso_callback_body(gw: &Gateway, cookie: Option<&str>, body: Value) -> Answer {
    let mut req = client().post(gw.url("/api/auth/sso_callback")).json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{BINDING_COOKIE}={c}"));
    }
    read(req.send().await.expect("sso callback")).await
}

/// The callback as the single-page app sends it: `{code, state}` and the browser's cookie.
pub async fn sso_callback(gw: &Gateway, cookie: Option<&str>, code: &str, state: &str) -> Answer {
    sso_callback_body(gw, cookie, json!({"code": code, "state": state})).await
}

/// A login that has been to the provider and is about to come back to the gateway.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The authorization URL the gateway returned.
    pub url: String,
    /// The binding cookie the gateway set.
    pub cookie: String,
    pub auth: AuthResponse,
}

impl Flow {
    /// A query parameter of the authorization URL.
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(&self.url, name)
    }

    /// The callback, from the browser that started the login.
    pub async fn callback(&self, gw: &Gateway) -> Answer {
        sso_callback(gw, Some(&self.cookie), &self.auth.code, &self.auth.state).await
    }
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url).ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

/// Start at the gateway in a new browser, then log in at the provider as `account`.
pub async fn sso_authorize(gw: &Gateway, provider: &OidcProvider, account: &str) -> Flow {
    let (url, cookie) = sso_start(gw, PROVIDER).await;
    let auth = provider.authorize(&url, Some(account)).await;
    Flow { url, cookie, auth }
}

/// The whole round: start, log in at the provider as `account`, and the callback.
pub async fn sso_login(gw: &Gateway, provider: &OidcProvider, account: &str) -> Answer {
    sso_authorize(gw, provider, account)
        .await
        .callback(gw)
        .await
}

/// The token of a successful login (panics with the answer otherwise).
pub fn token_of(a: &Answer) -> String {
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {}", a.text))
        .to_string()
}

/// `GET path` through the gateway with `token`.
pub async fn get_with_token(gw: &Gateway, path: &str, token: &str) -> Answer {
    read(
        client()
            .get(gw.url(path))
            .header("x-access-token", token)
            .send()
            .await
            .expect("proxied request"),
    )
    .await
}

/// The users file of a memory-store gateway, parsed.
pub fn users_file(gw: &Gateway) -> toml::Value {
    let text = std::fs::read_to_string(gw.users_path()).expect("users file");
    toml::from_str(&text).unwrap_or_else(|e| panic!("users file does not parse: {e}\n{text}"))
}

/// The `[[links]]` of the users file as (issuer, subject, user).
pub fn users_file_links(gw: &Gateway) -> Vec<(String, String, String)> {
    let file = users_file(gw);
    let Some(links) = file.get("links").and_then(|l| l.as_array()) else {
        return Vec::new();
    };
    links
        .iter()
        .map(|l| {
            let s = |k: &str| {
                l.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_else(|| panic!("a [[links]] entry without {k}: {l}"))
                    .to_string()
            };
            (s("issuer"), s("subject"), s("user"))
        })
        .collect()
}

/// The `[[users]]` of the users file.
pub fn users_file_users(gw: &Gateway) -> Vec<toml::Value> {
    users_file(gw)
        .get("users")
        .and_then(|u| u.as_array())
        .cloned()
        .unwrap_or_default()
}

/// The Redis key of the link of (issuer, subject), with the test prefix `ag:`.
pub fn redis_link_key(issuer: &str, subject: &str) -> String {
    format!(
        "ag:{{users}}:idp:{}",
        serde_json::to_string(&json!([issuer, subject])).unwrap()
    )
}
