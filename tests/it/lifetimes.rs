//! How long a session lasts: each client family gets the token lifetime its documentation
//! promises (6 hours for signin, 24 hours for login and register), refresh keeps it, and no
//! session outlives its absolute cap, however often it is refreshed.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

fn lifetime(token: &str) -> i64 {
    let c = claims(token);
    c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap()
}

fn token(a: &Answer) -> String {
    assert_eq!(a.status, 200, "{}", a.text);
    a.json["token"].as_str().expect("token").to_string()
}

fn creds() -> Value {
    json!({"email": EMAIL, "password": PASSWORD})
}

async fn with_token(gw: &Gateway, method: reqwest::Method, path: &str, token: &str) -> Answer {
    read(
        client()
            .request(method, gw.url(path))
            .header("x-access-token", token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn refresh(gw: &Gateway, token: &str) -> Answer {
    with_token(
        gw,
        reqwest::Method::POST,
        "/api/user/refresh/profile",
        token,
    )
    .await
}

fn limits() -> String {
    "[rate_limit]\nauth_per_minute = 1000\n".into()
}

#[tokio::test]
async fn each_family_gets_its_own_lifetime_and_refresh_keeps_it() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: limits(),
            ..Options::default()
        },
    );
    let signin = token(&post_json(&gw.url("/api/auth/signin"), creds()).await);
    assert_eq!(lifetime(&signin), 21_600);
    let login = token(&post_json(&gw.url("/api/auth/login"), creds()).await);
    assert_eq!(lifetime(&login), 86_400);
    let registered = token(
        &post_json(
            &gw.url("/api/auth/register"),
            json!({"email": "new.partner@firm.example", "password": "a-long-password-1",
                   "firstName": "New", "lastName": "Partner"}),
        )
        .await,
    );
    assert_eq!(lifetime(&registered), 86_400);

    // Refresh keeps the family of the endpoint that started the session.
    assert_eq!(lifetime(&token(&refresh(&gw, &login).await)), 86_400);
    assert_eq!(lifetime(&token(&refresh(&gw, &signin).await)), 21_600);
    assert_eq!(lifetime(&token(&refresh(&gw, &registered).await)), 86_400);
}

#[tokio::test]
async fn jwt_validity_sec_sets_the_signin_family_only() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: limits(),
            env: vec![("JWT_VALIDITY_SEC".into(), "900".into())],
            ..Options::default()
        },
    );
    let signin = token(&post_json(&gw.url("/api/auth/signin"), creds()).await);
    assert_eq!(lifetime(&signin), 900);
    let login = token(&post_json(&gw.url("/api/auth/login"), creds()).await);
    assert_eq!(lifetime(&login), 86_400);
}

#[tokio::test]
async fn mfa_verify_keeps_the_family_that_asked_for_it() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            users_toml: Some(sample_users().replace("mfa_enabled = false", "mfa_enabled = true")),
            rate_limit_section: limits(),
            extra_toml: format!(
                "[mfa]\ndelivery = \"webhook\"\nwebhook_url = \"http://{}/mail\"\n",
                hook.addr
            ),
            ..Options::default()
        },
    );
    for (endpoint, want) in [("/api/auth/signin", 21_600), ("/api/auth/login", 86_400)] {
        let challenge = post_json(&gw.url(endpoint), creds()).await;
        assert_eq!(challenge.json["mfaRequired"], true, "{}", challenge.text);
        let id = challenge.json["challengeId"].as_str().unwrap();
        let mail: Value = hook
            .requests()
            .iter()
            .rev()
            .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap())
            .find(|b| b["challengeId"] == id)
            .expect("the code was mailed");
        let verified = post_json(
            &gw.url("/api/auth/mfa/verify"),
            json!({"challengeId": id, "code": mail["code"]}),
        )
        .await;
        assert_eq!(lifetime(&token(&verified)), want, "after {endpoint}");
    }
}

/// Wait until the clock is past `exp` (a token's expiry, Unix seconds).
async fn wait_past(exp: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while now() <= exp {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn capped(cap_secs: u64) -> String {
    format!("[token]\nsecret = \"{SECRET}\"\nmax_session_secs = {cap_secs}\n")
}

#[tokio::test]
async fn refresh_never_extends_a_session_past_its_cap() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            token_section: capped(3),
            rate_limit_section: limits(),
            ..Options::default()
        },
    );
    let first = token(&post_json(&gw.url("/api/auth/login"), creds()).await);
    let cap = claims(&first)["exp"].as_i64().unwrap();
    let started = claims(&first)["iat"].as_i64().unwrap();
    assert_eq!(cap - started, 3, "the cap is shorter than the lifetime");

    // The last refresh before the cap gets a token that ends exactly at the cap.
    let refreshed = token(&refresh(&gw, &first).await);
    assert_eq!(claims(&refreshed)["exp"].as_i64().unwrap(), cap);
    assert_eq!(
        with_token(&gw, reqwest::Method::GET, "/x", &refreshed)
            .await
            .status,
        200
    );

    wait_past(cap).await;
    for t in [&first, &refreshed] {
        let a = with_token(&gw, reqwest::Method::GET, "/x", t).await;
        assert_error(&a, 401, "Session expired", "session expired");
        assert_error(
            &refresh(&gw, t).await,
            401,
            "Session expired",
            "session expired",
        );
    }
    assert_eq!(up.count(), 1, "nothing after the cap reached the upstream");
}

#[tokio::test]
async fn without_a_cap_tokens_expire_as_jwt_expired() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            token_section: format!(
                "[token]\nsecret = \"{SECRET}\"\nvalidity_secs = 2\nmax_session_secs = 0\n"
            ),
            rate_limit_section: limits(),
            ..Options::default()
        },
    );
    let t = token(&post_json(&gw.url("/api/auth/signin"), creds()).await);
    assert_eq!(lifetime(&t), 2);
    wait_past(claims(&t)["exp"].as_i64().unwrap()).await;
    let a = with_token(&gw, reqwest::Method::GET, "/x", &t).await;
    assert_error(&a, 401, "Token expired", "jwt expired");
}

#[tokio::test]
async fn the_cap_holds_across_instances_with_redis() {
    let redis = RedisServer::start();
    let store = redis_store(&format!("\"{}\"", redis.url()), "");
    let opts = || Options {
        token_section: capped(4),
        rate_limit_section: limits(),
        store_section: Some(store.clone()),
        ..Options::default()
    };
    let up = Upstream::start();
    let a = Gateway::start(&up, opts());
    let b = Gateway::start(&up, opts());
    let first = token(&post_json(&a.url("/api/auth/signin"), creds()).await);
    let cap = claims(&first)["exp"].as_i64().unwrap();
    let session = claims(&first)["sessionId"].as_str().unwrap().to_string();
    let user = claims(&first)["_id"].as_str().unwrap().to_string();

    // Refreshed on the other instance: still ends at the cap.
    let refreshed = token(&refresh(&b, &first).await);
    assert_eq!(claims(&refreshed)["exp"].as_i64().unwrap(), cap);
    // Redis lets the session go at the cap too.
    let key = format!("ag:{{u:{user}}}:s:{session}");
    let expire_at: i64 = redis.query(&["EXPIRETIME", &key]);
    assert_eq!(expire_at, cap);

    wait_past(cap).await;
    for gw in [&a, &b] {
        let r = with_token(gw, reqwest::Method::GET, "/x", &refreshed).await;
        assert_error(&r, 401, "Session expired", "session expired");
        assert_error(
            &refresh(gw, &refreshed).await,
            401,
            "Session expired",
            "session expired",
        );
    }
    assert_eq!(up.count(), 0);
}
