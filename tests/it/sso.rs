//! Single sign-on with OpenID Connect: a user signs in through a real OpenID Provider (the
//! test provider in tests/oidc) and comes back with a gateway token, linked to their account by
//! (issuer, subject). Everything a hostile provider response, another browser or a replay could
//! try is refused with 401 `SSO failed`, and nothing reaches the upstream.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// Bind every field where it is used: a `..` pattern would stop the rest at once.
struct Setup {
    gw: Gateway,
    up: Upstream,
    provider: OidcProvider,
}

/// A provider with the usual accounts and a memory-store gateway for it.
async fn setup(provider_extra: &str) -> Setup {
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    let gw = sso_gateway(
        &up,
        &provider,
        sso_options(&provider.issuer, provider_extra),
    )
    .await;
    Setup { gw, up, provider }
}

fn assert_no_token(a: &Answer) {
    assert!(
        a.json.get("token").is_none(),
        "a token was issued: {}",
        a.text
    );
    assert!(
        a.json.get("mfaRequired").is_none(),
        "an MFA challenge was issued: {}",
        a.text
    );
}

fn assert_sso_failed(a: &Answer, message: &str) {
    assert_error(a, 401, "SSO failed", message);
    assert_no_token(a);
}

const STATE_GONE: &str = "state unknown, expired or already used";
const OTHER_BROWSER: &str = "state was issued to another browser";

/// A well-formed binding cookie that no start has issued.
const STRANGE_COOKIE: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ------------------------------------------------------------------------------------------
// The harness itself, without the gateway

/// The code for tokens at the provider's token endpoint, as a client_secret_basic client.
async fn exchange(provider: &OidcProvider, code: &str, verifier: &str) -> Answer {
    let resp = client()
        .post(provider.url("/token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .send()
        .await;
    read(resp.unwrap_or_else(|e| panic!("POST /token: {e:?}\n{}", provider.log()))).await
}

/// The test provider logs in without a browser for an authorization request built here with
/// PKCE S256, and its code exchanges for an ID token carrying our nonce. Proves the login
/// driver the other tests rely on.
#[tokio::test]
async fn harness_provider_logs_in_without_a_browser() {
    use base64::Engine;
    use sha2::Digest;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let provider = OidcProvider::start(provider_config());
    let discovery = read(
        client()
            .get(provider.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(discovery.json["issuer"], provider.issuer.as_str());

    let verifier = b64.encode([7u8; 32]);
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let mut url = url::Url::parse(discovery.json["authorization_endpoint"].as_str().unwrap())
        .expect("authorization endpoint");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid email profile")
        .append_pair("state", "state-123")
        .append_pair("nonce", "nonce-456")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    let auth = provider
        .authorize(url.as_str(), Some(account::STRANGER))
        .await;
    assert_eq!(auth.state, "state-123");
    assert_eq!(auth.iss.as_deref(), Some(provider.issuer.as_str()));

    let tokens = exchange(&provider, &auth.code, &verifier).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    let id = claims(tokens.json["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], account::STRANGER);
    assert_eq!(id["nonce"], "nonce-456");
    assert_eq!(id["email"], STRANGER_EMAIL);
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["aud"], CLIENT_ID);

    // A queued login, a rotated key and a hostile token, as the other tests use them.
    let before = provider.keys().await["active_kid"].clone();
    let rotated = provider.rotate_keys(true).await;
    assert_ne!(rotated["active_kid"], before);
    assert_eq!(rotated["published_kids"].as_array().unwrap().len(), 1);
    provider.queue_login(account::NEWCOMER).await;
    provider.next_id_token(json!({"mode": "none"})).await;
    let second = provider.authorize(url.as_str(), None).await;
    let tokens = exchange(&provider, &second.code, &verifier).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    let id_token = tokens.json["id_token"].as_str().unwrap();
    assert!(id_token.ends_with('.'), "alg none has no signature");
    assert_eq!(claims(id_token)["sub"], account::NEWCOMER);
}

// ------------------------------------------------------------------------------------------
// Signing in

#[tokio::test]
async fn sign_in_through_the_provider_with_the_memory_store() {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    assert_eq!(flow.auth.iss.as_deref(), Some(provider.issuer.as_str()));
    let a = flow.callback(&gw).await;
    let token = token_of(&a);
    assert_eq!(a.json["profile"]["_id"], USER_ID);
    let c = claims(&token);
    assert_eq!(c["_id"], USER_ID);
    assert_eq!(c["email"], EMAIL);
    assert_eq!(c["accountType"], "user");
    assert!(c["sessionId"].is_string(), "{c}");
    assert_eq!(up.count(), 0, "signing in forwards nothing");

    let r = get_with_token(&gw, "/api/data", &token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.last().header("x-user-id").as_deref(), Some(USER_ID));

    // The identity is linked in the users file, by issuer and subject.
    assert_eq!(
        users_file_links(&gw),
        vec![(
            provider.issuer.clone(),
            account::JOHN.to_string(),
            USER_ID.to_string()
        )]
    );

    // The operator changes the user's email: the link still finds the user.
    let text = std::fs::read_to_string(gw.users_path()).unwrap();
    let new_email = "john@newdomain.com";
    let edited = text.replace(
        &format!("email = \"{EMAIL}\""),
        &format!("email = \"{new_email}\""),
    );
    assert_ne!(
        edited, text,
        "the user's email is in the users file:\n{text}"
    );
    std::fs::write(gw.users_path(), edited).unwrap();
    gw.signal("HUP");
    let start = Instant::now();
    loop {
        let s = post_json(
            &gw.url("/api/auth/signin"),
            json!({"email": new_email, "password": PASSWORD}),
        )
        .await;
        if s.status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the edited users file was not reloaded: {}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = sso_login(&gw, &provider, account::JOHN).await;
    let token = token_of(&again);
    assert_eq!(claims(&token)["_id"], USER_ID);
    assert_eq!(claims(&token)["email"], new_email);
    assert_eq!(users_file_links(&gw).len(), 1, "linked once");
}

fn redis_sso_options(redis: &RedisServer, issuer: &str) -> Options {
    Options {
        store_section: Some(redis_store(&format!("\"{}\"", redis.url()), "")),
        ..sso_options(issuer, DOMAINS)
    }
}

#[tokio::test]
async fn sign_in_through_the_provider_with_redis() {
    let redis = RedisServer::start();
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    let gw = sso_gateway(&up, &provider, redis_sso_options(&redis, &provider.issuer)).await;

    let a = sso_login(&gw, &provider, account::JOHN).await;
    let token = token_of(&a);
    assert_eq!(claims(&token)["_id"], USER_ID);
    let r = get_with_token(&gw, "/api/data", &token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.last().header("x-user-id").as_deref(), Some(USER_ID));

    let key = redis_link_key(&provider.issuer, account::JOHN);
    assert_eq!(redis.query::<String>(&["GET", &key]), USER_ID, "{key}");

    let again = sso_login(&gw, &provider, account::JOHN).await;
    assert_eq!(claims(&token_of(&again))["_id"], USER_ID);
}

#[tokio::test]
async fn start_on_one_instance_and_come_back_to_another() {
    let redis = RedisServer::start();
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    let a = sso_gateway(&up, &provider, redis_sso_options(&redis, &provider.issuer)).await;
    let b = sso_gateway(&up, &provider, redis_sso_options(&redis, &provider.issuer)).await;

    let flow = sso_authorize(&a, &provider, account::JOHN).await;
    let answer = flow.callback(&b).await;
    let token = token_of(&answer);
    assert_eq!(claims(&token)["_id"], USER_ID);
    for gw in [&a, &b] {
        let r = get_with_token(gw, "/api/data", &token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(up.last().header("x-user-id").as_deref(), Some(USER_ID));
    }
    // The state was used up on b: a replay on a is refused.
    assert_sso_failed(&flow.callback(&a).await, STATE_GONE);
}

#[tokio::test]
async fn get_start_redirects_to_the_provider_with_pkce_and_a_binding_cookie() {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let discovery = read(
        client()
            .get(provider.url("/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let endpoint = discovery.json["authorization_endpoint"]
        .as_str()
        .unwrap()
        .to_string();

    let a = read(
        no_redirect_client()
            .get(gw.url(&format!("/api/auth/sso/{PROVIDER}/start")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 302, "{}", a.text);
    let location = a.headers["location"].to_str().unwrap().to_string();
    assert_eq!(a.json["url"], location.as_str(), "the body repeats the URL");
    assert!(
        location.starts_with(&format!("{endpoint}?")),
        "{location} is not at {endpoint}"
    );
    let p = |name: &str| query_param(&location, name);
    assert_eq!(p("response_type").as_deref(), Some("code"));
    assert_eq!(p("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(p("redirect_uri").as_deref(), Some(REDIRECT_URI));
    assert_eq!(p("scope").as_deref(), Some("openid email profile"));
    assert_eq!(p("code_challenge_method").as_deref(), Some("S256"));
    let challenge = p("code_challenge").expect("code_challenge");
    assert!(
        challenge.len() == 43 && is_base64url(&challenge),
        "{challenge}"
    );
    let state = p("state").expect("state");
    let nonce = p("nonce").expect("nonce");
    assert!(state.len() >= 22 && nonce.len() >= 22, "{state} {nonce}");
    assert_ne!(state, nonce);

    let line = set_cookie_line(&a).expect("binding cookie");
    let cookie = binding_cookie(&a).unwrap();
    assert!(cookie.len() == 43 && is_base64url(&cookie), "{line}");
    let attrs: Vec<String> = line
        .split(';')
        .skip(1)
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for want in [
        "httponly",
        "secure",
        "samesite=lax",
        "path=/api/auth",
        "max-age=600",
    ] {
        assert!(attrs.iter().any(|a| a == want), "{want} missing: {line}");
    }

    // The redirect works like a link in a page: log in there and come back.
    let auth = provider.authorize(&location, Some(account::JOHN)).await;
    assert_eq!(auth.state, state);
    let done = sso_callback(&gw, Some(&cookie), &auth.code, &auth.state).await;
    assert_eq!(claims(&token_of(&done))["_id"], USER_ID);

    // Every start makes a fresh state, nonce and challenge.
    let (other, _) = sso_start(&gw, PROVIDER).await;
    assert!(other.starts_with(&format!("{endpoint}?")), "{other}");
    for name in ["state", "nonce", "code_challenge"] {
        assert_ne!(query_param(&other, name), p(name), "{name} reused");
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn two_tabs_of_one_browser_both_finish() {
    let Setup {
        gw,
        provider,
        up: _up,
    } = setup(DOMAINS).await;
    let (url1, cookie) = sso_start(&gw, PROVIDER).await;
    let (url2, cookie2) = sso_start_in(&gw, PROVIDER, Some(&cookie)).await;
    assert_eq!(cookie, cookie2, "the browser's cookie is kept");
    let (url3, cookie3) = sso_start_in(&gw, PROVIDER, Some(&cookie)).await;
    assert_eq!(cookie, cookie3);
    let auth1 = provider.authorize(&url1, Some(account::JOHN)).await;
    let auth2 = provider.authorize(&url2, Some(account::JOHN)).await;
    let auth3 = provider.authorize(&url3, Some(account::JOHN)).await;
    assert_ne!(auth1.state, auth2.state);

    // Finished out of order: the second tab first.
    for auth in [&auth2, &auth1, &auth3] {
        let a = sso_callback(&gw, Some(&cookie), &auth.code, &auth.state).await;
        assert_eq!(claims(&token_of(&a))["_id"], USER_ID);
    }
}

#[tokio::test]
async fn a_state_is_accepted_once() {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    token_of(&flow.callback(&gw).await);
    assert_sso_failed(&flow.callback(&gw).await, STATE_GONE);
    // A state the gateway never made.
    let forged = sso_callback(&gw, Some(&flow.cookie), &flow.auth.code, "no-such-state").await;
    assert_sso_failed(&forged, STATE_GONE);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_state_belongs_to_the_browser_that_started_it() {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    let (_, other_browser) = sso_start(&gw, PROVIDER).await;
    assert_ne!(other_browser, flow.cookie);
    let (code, state) = (&flow.auth.code, &flow.auth.state);

    assert_sso_failed(
        &sso_callback(&gw, Some(&other_browser), code, state).await,
        OTHER_BROWSER,
    );
    assert_sso_failed(
        &sso_callback(&gw, Some(STRANGE_COOKIE), code, state).await,
        OTHER_BROWSER,
    );
    assert_sso_failed(&sso_callback(&gw, None, code, state).await, OTHER_BROWSER);
    assert_eq!(up.count(), 0);

    // The refusals did not use the state up: the right browser still finishes.
    let a = flow.callback(&gw).await;
    assert_eq!(claims(&token_of(&a))["_id"], USER_ID);
}

#[tokio::test]
async fn an_expired_state_is_refused() {
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    let opts = Options {
        extra_toml: sso_toml(&provider.issuer, DOMAINS, "state_ttl_secs = 1\n"),
        ..sso_options(&provider.issuer, DOMAINS)
    };
    let gw = sso_gateway(&up, &provider, opts).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;

    // Ask from another browser, which never uses the state up, until the gateway has
    // forgotten it.
    let start = Instant::now();
    loop {
        let probe =
            sso_callback(&gw, Some(STRANGE_COOKIE), &flow.auth.code, &flow.auth.state).await;
        assert_eq!(probe.status, 401, "{}", probe.text);
        assert_no_token(&probe);
        if probe.json["message"] == STATE_GONE {
            break;
        }
        assert_eq!(probe.json["message"], OTHER_BROWSER, "{}", probe.text);
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "a state of one second is still known after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_sso_failed(&flow.callback(&gw).await, STATE_GONE);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn the_iss_parameter_must_name_the_provider() {
    let Setup {
        gw,
        provider,
        up: _up,
    } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    let a = sso_callback_body(
        &gw,
        Some(&flow.cookie),
        json!({"code": flow.auth.code, "state": flow.auth.state, "iss": "http://127.0.0.1:1"}),
    )
    .await;
    assert_sso_failed(&a, "iss does not match the provider");

    // The iss the provider sent back is accepted.
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    let ok = sso_callback_body(
        &gw,
        Some(&flow.cookie),
        json!({"code": flow.auth.code, "state": flow.auth.state, "iss": flow.auth.iss}),
    )
    .await;
    assert_eq!(claims(&token_of(&ok))["_id"], USER_ID);
}

#[tokio::test]
async fn a_code_the_provider_refuses_is_refused() {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    let forged = format!("{}x", flow.auth.code);
    let a = sso_callback(&gw, Some(&flow.cookie), &forged, &flow.auth.state).await;
    assert_sso_failed(&a, "the provider refused the authorization code");
    assert_eq!(up.count(), 0);
    assert!(users_file_links(&gw).is_empty());
}

#[tokio::test]
async fn malformed_callbacks_and_starts_are_bad_requests() {
    let Setup {
        gw,
        provider: _provider,
        up: _up,
    } = setup(DOMAINS).await;
    let (_, cookie) = sso_start(&gw, PROVIDER).await;
    for body in [
        json!({}),
        json!({"code": "c"}),
        json!({"state": "s"}),
        json!([1]),
    ] {
        let a = sso_callback_body(&gw, Some(&cookie), body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.text);
        assert_eq!(a.json["error"], "Bad Request", "{}", a.text);
        assert!(a.json["message"].is_string());
    }
    let a = post_json(&gw.url("/api/auth/sso/start"), json!({})).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert_eq!(a.json["error"], "Bad Request");
}

#[tokio::test]
async fn an_unknown_provider_is_refused() {
    let Setup {
        gw,
        up,
        provider: _provider,
    } = setup(DOMAINS).await;
    let a = sso_start_raw(&gw, "nope", None).await;
    assert_error(&a, 400, "Bad Request", "Unknown identity provider");
    assert!(
        binding_cookie(&a).is_none(),
        "no cookie for an unknown provider"
    );
    let g = read(
        no_redirect_client()
            .get(gw.url("/api/auth/sso/nope/start"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&g, 404, "Not Found", "Unknown identity provider");
    assert!(!g.headers.contains_key("location"));
    assert_eq!(up.count(), 0);
}

// ------------------------------------------------------------------------------------------
// MFA

#[tokio::test]
async fn an_mfa_user_proves_the_code_after_the_provider() {
    let provider = OidcProvider::start(provider_config());
    let hook = Upstream::start();
    let up = Upstream::start();
    let opts = Options {
        users_toml: Some(sample_users().replace("mfa_enabled = false", "mfa_enabled = true")),
        extra_toml: format!(
            "[mfa]\ndelivery = \"webhook\"\nwebhook_url = \"http://{}/mail\"\n\n{}",
            hook.addr,
            sso_toml(&provider.issuer, DOMAINS, "")
        ),
        ..sso_options(&provider.issuer, DOMAINS)
    };
    let gw = sso_gateway(&up, &provider, opts).await;

    let a = sso_login(&gw, &provider, account::JOHN).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["mfaRequired"], true, "{}", a.text);
    assert_eq!(a.json["maskedEmail"], "j*****e@mydomain.com");
    assert!(a.json.get("token").is_none(), "no token before the code");
    let challenge = a.json["challengeId"].as_str().unwrap().to_string();

    let mail: Value = serde_json::from_slice(&hook.last().body).unwrap();
    assert_eq!(mail["to"], EMAIL);
    assert_eq!(mail["challengeId"], challenge.as_str());
    let code = mail["code"].as_str().unwrap().to_string();
    let v = post_json(
        &gw.url("/api/auth/mfa/verify"),
        json!({"challengeId": challenge, "code": code}),
    )
    .await;
    let token = token_of(&v);
    assert_eq!(claims(&token)["_id"], USER_ID);
    assert_eq!(up.count(), 0);
    assert_eq!(get_with_token(&gw, "/api/data", &token).await.status, 200);
    assert_eq!(up.last().header("x-user-id").as_deref(), Some(USER_ID));

    // The device is trusted from now on, for single sign-on too.
    let device = v.json["deviceToken"].as_str().unwrap();
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    let trusted = sso_callback_body(
        &gw,
        Some(&flow.cookie),
        json!({"code": flow.auth.code, "state": flow.auth.state, "deviceToken": device}),
    )
    .await;
    assert_eq!(claims(&token_of(&trusted))["_id"], USER_ID);
}

// ------------------------------------------------------------------------------------------
// Linking by verified email

#[tokio::test]
async fn an_unverified_email_links_nothing() {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let before = std::fs::read_to_string(gw.users_path()).unwrap();
    let a = sso_login(&gw, &provider, account::UNVERIFIED).await;
    assert_sso_failed(&a, "email not verified by the provider");
    assert_eq!(
        std::fs::read_to_string(gw.users_path()).unwrap(),
        before,
        "nothing written to the users file"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn an_email_outside_the_allowed_domains_is_refused() {
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    // A user with that email exists; the domain rule still refuses it.
    let hash = bcrypt::hash("guest-password", 4).unwrap();
    let users = format!(
        "{}\n[[users]]\nid = \"u-guest\"\nemail = \"{OUTSIDER_EMAIL}\"\npassword_hash = \"{hash}\"\n\
         first_name = \"Gu\"\nlast_name = \"Est\"\naccount_type = \"user\"\norg = \"{ORG_ID}\"\n",
        sample_users()
    );
    let opts = Options {
        users_toml: Some(users),
        ..sso_options(&provider.issuer, DOMAINS)
    };
    let gw = sso_gateway(&up, &provider, opts).await;
    let a = sso_login(&gw, &provider, account::OUTSIDER).await;
    assert_sso_failed(&a, "email domain not allowed");
    assert!(users_file_links(&gw).is_empty());
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_verified_email_without_an_account_is_forbidden() {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let before = std::fs::read_to_string(gw.users_path()).unwrap();
    for who in [account::STRANGER, account::LOOKALIKE] {
        let a = sso_login(&gw, &provider, who).await;
        assert_error(
            &a,
            403,
            "Forbidden",
            "No account is linked to this identity",
        );
        assert_no_token(&a);
    }
    assert_eq!(std::fs::read_to_string(gw.users_path()).unwrap(), before);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn email_letter_case_does_not_matter_when_linking() {
    let Setup {
        gw,
        provider,
        up: _up,
    } = setup(DOMAINS).await;
    let a = sso_login(&gw, &provider, account::JOHN_UPPER).await;
    let token = token_of(&a);
    assert_eq!(claims(&token)["_id"], USER_ID);
    assert_eq!(claims(&token)["email"], EMAIL, "the account's own email");
    assert_eq!(
        users_file_links(&gw),
        vec![(
            provider.issuer.clone(),
            account::JOHN_UPPER.to_string(),
            USER_ID.to_string()
        )]
    );
}

#[tokio::test]
async fn an_email_with_two_at_signs_links_to_nobody() {
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    // Split at the last `@`, the domain is allowed and an account would be made; split at the
    // first, the local part is the sample user's: only the one-`@` rule refuses it.
    let extra = format!(
        "email_domains = [\"mydomain.com\", \"evil.test\"]\n\
         auto_provision = {{ org = \"{ORG_ID}\", account_type = \"user\" }}\n"
    );
    let gw = sso_gateway(&up, &provider, sso_options(&provider.issuer, &extra)).await;
    let users_before = users_file_users(&gw).len();
    let a = sso_login(&gw, &provider, account::TWO_AT).await;
    assert!(
        (a.status == 401 && a.json["error"] == "SSO failed")
            || (a.status == 403 && a.json["error"] == "Forbidden"),
        "{} {}",
        a.status,
        a.text
    );
    assert!(a.json["message"].is_string());
    assert_no_token(&a);
    assert!(users_file_links(&gw).is_empty());
    assert_eq!(users_file_users(&gw).len(), users_before, "no account made");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn auto_provision_makes_an_account_in_the_configured_org() {
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    let extra =
        format!("{DOMAINS}auto_provision = {{ org = \"{ORG_ID}\", account_type = \"user\" }}\n");
    let gw = sso_gateway(&up, &provider, sso_options(&provider.issuer, &extra)).await;
    let users_before = users_file_users(&gw).len();

    provider
        .next_id_token(json!({"claims": {"given_name": "Ada", "family_name": "Lovelace"}}))
        .await;
    let a = sso_login(&gw, &provider, account::NEWCOMER).await;
    let token = token_of(&a);
    let c = claims(&token);
    let id = c["_id"].as_str().expect("_id").to_string();
    assert!(!id.is_empty() && id != USER_ID, "{c}");
    assert_eq!(c["email"], NEWCOMER_EMAIL);
    assert_eq!(c["accountType"], "user");
    assert_eq!(a.json["profile"]["_id"], id.as_str());

    let users = users_file_users(&gw);
    assert_eq!(users.len(), users_before + 1);
    let user = users
        .iter()
        .find(|u| u["id"].as_str() == Some(id.as_str()))
        .expect("the new user is in the users file");
    assert_eq!(user["email"].as_str(), Some(NEWCOMER_EMAIL));
    assert_eq!(user["org"].as_str(), Some(ORG_ID));
    assert_eq!(user["account_type"].as_str(), Some("user"));
    assert_eq!(user["first_name"].as_str(), Some("Ada"));
    assert_eq!(user["last_name"].as_str(), Some("Lovelace"));
    assert_eq!(
        users_file_links(&gw),
        vec![(
            provider.issuer.clone(),
            account::NEWCOMER.to_string(),
            id.clone()
        )]
    );

    let r = get_with_token(&gw, "/api/data", &token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(up.last().header("x-user-id").as_deref(), Some(id.as_str()));

    // Next time the link is used; no second account.
    let again = sso_login(&gw, &provider, account::NEWCOMER).await;
    assert_eq!(claims(&token_of(&again))["_id"], id.as_str());
    assert_eq!(users_file_users(&gw).len(), users_before + 1);
}

// ------------------------------------------------------------------------------------------
// Hostile ID tokens

/// The provider rewrites the ID token of this login as `spec` says; the gateway must refuse
/// it with 401 `SSO failed` and a message that `message_ok` accepts, issue nothing, forward
/// nothing and link nothing.
async fn hostile(spec: Value, message_ok: impl Fn(&str) -> bool) {
    let Setup { gw, up, provider } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    provider.next_id_token(spec.clone()).await;
    let a = flow.callback(&gw).await;
    assert_eq!(a.status, 401, "{spec}: {}", a.text);
    assert_eq!(a.json["error"], "SSO failed", "{spec}: {}", a.text);
    let message = a.json["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("ID token") && message_ok(message),
        "{spec}: {message}"
    );
    assert_no_token(&a);
    assert_eq!(up.count(), 0, "{spec}: something was forwarded");
    assert!(users_file_links(&gw).is_empty(), "{spec}: linked");
}

fn exactly(want: &'static str) -> impl Fn(&str) -> bool {
    move |m| m == want
}

fn any_check(_: &str) -> bool {
    true
}

#[tokio::test]
async fn id_token_for_another_audience() {
    hostile(
        json!({"claims": {"aud": "someone-else"}}),
        exactly("ID token audience mismatch"),
    )
    .await;
}

#[tokio::test]
async fn id_token_from_another_issuer() {
    hostile(
        json!({"claims": {"iss": "http://127.0.0.1:1"}}),
        exactly("ID token issuer mismatch"),
    )
    .await;
}

#[tokio::test]
async fn id_token_expired() {
    hostile(json!({"exp_offset": -3600}), exactly("ID token expired")).await;
}

#[tokio::test]
async fn id_token_issued_in_the_future() {
    hostile(
        json!({"iat_offset": 3600}),
        exactly("ID token issued in the future"),
    )
    .await;
}

#[tokio::test]
async fn id_token_with_another_nonce() {
    hostile(
        json!({"claims": {"nonce": "not-the-nonce-of-this-login"}}),
        exactly("ID token nonce mismatch"),
    )
    .await;
}

#[tokio::test]
async fn id_token_without_a_nonce() {
    hostile(json!({"unset": ["nonce"]}), any_check).await;
}

#[tokio::test]
async fn id_token_with_alg_none() {
    hostile(json!({"mode": "none"}), |m| {
        m == "ID token algorithm not allowed" || m == "ID token malformed"
    })
    .await;
}

#[tokio::test]
async fn id_token_signed_hs256_with_the_client_secret() {
    hostile(
        json!({"mode": "hs256"}),
        exactly("ID token algorithm not allowed"),
    )
    .await;
}

#[tokio::test]
async fn id_token_with_a_bad_signature() {
    hostile(
        json!({"mode": "bad_signature"}),
        exactly("ID token signature invalid"),
    )
    .await;
}

#[tokio::test]
async fn id_token_signed_by_an_unknown_key() {
    hostile(
        json!({"mode": "unknown_kid"}),
        exactly("ID token signing key unknown"),
    )
    .await;
}

#[tokio::test]
async fn id_token_signed_by_another_key_under_a_known_kid() {
    hostile(
        json!({"mode": "wrong_key_known_kid"}),
        exactly("ID token signature invalid"),
    )
    .await;
}

#[tokio::test]
async fn id_token_for_several_audiences_without_azp() {
    hostile(
        json!({"claims": {"aud": [CLIENT_ID, "other"]}, "unset": ["azp"]}),
        any_check,
    )
    .await;
}

#[tokio::test]
async fn id_token_for_several_audiences_authorized_for_another_party() {
    hostile(
        json!({"claims": {"aud": [CLIENT_ID, "other"], "azp": "other"}}),
        any_check,
    )
    .await;
}

/// The counterpart of the two above: several audiences are fine when `azp` names us.
#[tokio::test]
async fn id_token_for_several_audiences_authorized_for_us_is_accepted() {
    let Setup {
        gw,
        provider,
        up: _up,
    } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    provider
        .next_id_token(json!({"claims": {"aud": [CLIENT_ID, "other"], "azp": CLIENT_ID}}))
        .await;
    let a = flow.callback(&gw).await;
    assert_eq!(claims(&token_of(&a))["_id"], USER_ID);
}

// ------------------------------------------------------------------------------------------
// The provider's keys and availability

#[tokio::test]
async fn keys_rotated_at_the_provider_while_the_gateway_runs() {
    let Setup {
        gw,
        provider,
        up: _up,
    } = setup(DOMAINS).await;
    // The gateway has the first key cached after this.
    token_of(&sso_login(&gw, &provider, account::JOHN).await);
    let first = provider.keys().await["active_kid"].clone();

    let rotated = provider.rotate_keys(true).await;
    assert_ne!(rotated["active_kid"], first);
    assert_eq!(rotated["published_kids"], json!([rotated["active_kid"]]));
    let a = sso_login(&gw, &provider, account::JOHN).await;
    assert_eq!(claims(&token_of(&a))["_id"], USER_ID);

    // A second rotation right after: the gateway may wait out its refetch interval, but the
    // login still works.
    provider.rotate_keys(true).await;
    let b = sso_login(&gw, &provider, account::JOHN).await;
    assert_eq!(claims(&token_of(&b))["_id"], USER_ID);
}

#[tokio::test]
async fn a_provider_down_at_start_is_waited_for() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let up = Upstream::start();
    let gw = Gateway::start(&up, sso_options(&issuer, DOMAINS));

    let ready = wait_provider_status(&gw, "unreachable", Duration::from_secs(20)).await;
    let status = admin_get(&gw, "/readyz").await.status;
    assert_eq!(status, 200, "readiness depends on the store only: {ready}");
    let a = sso_start_raw(&gw, PROVIDER, None).await;
    assert_error(
        &a,
        502,
        "Identity provider unavailable",
        "The identity provider could not be reached; try again later",
    );
    assert!(binding_cookie(&a).is_none(), "no cookie without a login");

    // The provider comes up on the configured port; the gateway notices by itself.
    let provider = OidcProvider::start_on(provider_config(), port);
    assert_eq!(provider.issuer, issuer);
    let start = Instant::now();
    loop {
        let a = sso_start_raw(&gw, PROVIDER, None).await;
        if a.status == 200 {
            break;
        }
        assert_error(
            &a,
            502,
            "Identity provider unavailable",
            "The identity provider could not be reached; try again later",
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "start still answers 502 {:?} after the provider came up",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_provider_status(&gw, "up", Duration::from_secs(20)).await;
    let a = sso_login(&gw, &provider, account::JOHN).await;
    assert_eq!(claims(&token_of(&a))["_id"], USER_ID);
}

#[tokio::test]
async fn a_provider_that_goes_away_mid_login_answers_502() {
    let Setup {
        gw,
        up,
        mut provider,
    } = setup(DOMAINS).await;
    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    provider.kill();
    let a = flow.callback(&gw).await;
    assert_error(
        &a,
        502,
        "Identity provider unavailable",
        "The identity provider could not be reached; try again later",
    );
    assert_no_token(&a);
    assert_eq!(up.count(), 0);
}

// ------------------------------------------------------------------------------------------
// Logs and limits

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let Setup {
        gw,
        provider,
        up: _up,
    } = setup(DOMAINS).await;
    let mut secrets: Vec<String> = vec![CLIENT_SECRET.to_string()];

    let flow = sso_authorize(&gw, &provider, account::JOHN).await;
    let a = flow.callback(&gw).await;
    let token = token_of(&a);
    assert_eq!(get_with_token(&gw, "/api/data", &token).await.status, 200);
    secrets.extend([
        flow.auth.code.clone(),
        flow.auth.state.clone(),
        flow.param("nonce").unwrap(),
        token.clone(),
    ]);
    // Failures: a replay, another browser, a bad ID token, an unverified email.
    assert_eq!(flow.callback(&gw).await.status, 401);
    let other = sso_authorize(&gw, &provider, account::JOHN).await;
    assert_eq!(
        sso_callback(&gw, None, &other.auth.code, &other.auth.state)
            .await
            .status,
        401
    );
    provider
        .next_id_token(json!({"mode": "bad_signature"}))
        .await;
    assert_eq!(other.callback(&gw).await.status, 401);
    let unverified = sso_authorize(&gw, &provider, account::UNVERIFIED).await;
    assert_eq!(unverified.callback(&gw).await.status, 401);
    for f in [&other, &unverified] {
        secrets.extend([
            f.auth.code.clone(),
            f.auth.state.clone(),
            f.param("nonce").unwrap(),
        ]);
    }

    let log = gw.log();
    assert!(!log.is_empty(), "the gateway logged nothing at all");
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "{s} is in the log:\n{log}");
    }
    // No JWT at all: neither an ID token nor a gateway token.
    assert!(!log.contains("eyJ"), "a JWT is in the log:\n{log}");
}

#[tokio::test]
async fn the_callback_shares_the_credential_limit() {
    let provider = OidcProvider::start(provider_config());
    let up = Upstream::start();
    let opts = Options {
        rate_limit_section: "[rate_limit]\nauth_per_minute = 2\n".into(),
        ..sso_options(&provider.issuer, DOMAINS)
    };
    let gw = sso_gateway(&up, &provider, opts).await;
    let mut flows = Vec::new();
    for _ in 0..3 {
        flows.push(sso_authorize(&gw, &provider, account::JOHN).await);
    }
    token_of(&flows[0].callback(&gw).await);
    token_of(&flows[1].callback(&gw).await);
    let third = flows[2].callback(&gw).await;
    assert_eq!(third.status, 429, "{}", third.text);
    assert_eq!(third.json["error"], "Too Many Requests");
    assert!(third.json["message"].is_string());
    assert_no_token(&third);
    let retry: u64 = third.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // One budget with signin.
    let s = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(s.status, 429, "{}", s.text);
}
