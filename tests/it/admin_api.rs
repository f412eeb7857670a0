//! An incident responder ends stolen sessions through the admin API: one session by id, every
//! session and trusted device of a user, or every token issued before a time. Each holds at once
//! on the instance that was asked and within a second on every other instance sharing its Redis,
//! and a refused request never reaches the upstream.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

fn with_admin(mut opts: Options) -> Options {
    opts.env
        .push(("ADMIN_TOKEN".to_string(), ADMIN_TOKEN.to_string()));
    opts.rate_limit_section = "[rate_limit]\nauth_per_minute = 1000\n".into();
    opts
}

fn memory() -> Options {
    with_admin(Options::default())
}

fn redis_opts(redis: &RedisServer) -> Options {
    with_admin(Options {
        store_section: Some(redis_store(&format!("\"{}\"", redis.url()), "")),
        ..Options::default()
    })
}

/// The sample users with email MFA on, the codes going to `hook`.
fn with_mfa(mut opts: Options, hook: &Upstream) -> Options {
    opts.users_toml = Some(sample_users().replace("mfa_enabled = false", "mfa_enabled = true"));
    opts.extra_toml = format!(
        "[mfa]\ndelivery = \"webhook\"\nwebhook_url = \"http://{}/mail\"\n",
        hook.addr
    );
    opts
}

async fn admin_revoke(gw: &Gateway, bearer: Option<&str>, body: Value) -> Answer {
    let mut req = client()
        .post(format!("http://{}/admin/revoke", gw.admin))
        .json(&body);
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    read(req.send().await.expect("admin listener")).await
}

async fn revoke(gw: &Gateway, body: Value) -> Answer {
    admin_revoke(gw, Some(ADMIN_TOKEN), body).await
}

async fn get(gw: &Gateway, token: &str) -> Answer {
    read(
        client()
            .get(gw.url("/api/data"))
            .header("x-access-token", token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A proxied request with `token` is refused as a revoked session, and the upstream never sees
/// it.
async fn assert_refused(gw: &Gateway, up: &Upstream, token: &str) {
    let before = up.count();
    let a = get(gw, token).await;
    assert_error(&a, 401, "Session expired", "session expired");
    assert_eq!(up.count(), before, "a refused request reached the upstream");
}

async fn assert_accepted(gw: &Gateway, up: &Upstream, token: &str) {
    let a = get(gw, token).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        up.last().header("x-session-id").as_deref(),
        claims(token)["sessionId"].as_str()
    );
}

/// Poll `gw` with `token` until it is refused, at most until `deadline`; every refused request
/// must stay away from the upstream.
async fn refused_by(gw: &Gateway, up: &Upstream, token: &str, deadline: Instant) {
    loop {
        let before = up.count();
        let a = get(gw, token).await;
        if a.status == 401 {
            assert_error(&a, 401, "Session expired", "session expired");
            assert_eq!(up.count(), before, "a refused request reached the upstream");
            return;
        }
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(
            Instant::now() < deadline,
            "still accepted a second after the revocation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait for the clock's next whole second (token `iat`s are whole seconds) and return it.
async fn next_second() -> i64 {
    let start = now();
    let deadline = Instant::now() + Duration::from_secs(3);
    while now() <= start {
        assert!(Instant::now() < deadline, "the clock stands still");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    now()
}

fn session_id(token: &str) -> String {
    claims(token)["sessionId"].as_str().unwrap().to_string()
}

/// Sign in through email MFA (the code from the webhook); returns the token and the device
/// token.
async fn signin_with_mfa(gw: &Gateway, hook: &Upstream) -> (String, String) {
    let a = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(a.json["mfaRequired"], true, "{}", a.text);
    let challenge = a.json["challengeId"].as_str().unwrap();
    let mail: Value = serde_json::from_slice(&hook.last().body).unwrap();
    assert_eq!(mail["challengeId"], challenge);
    let v = post_json(
        &gw.url("/api/auth/mfa/verify"),
        json!({"challengeId": challenge, "code": mail["code"]}),
    )
    .await;
    assert_eq!(v.status, 200, "{}", v.text);
    (
        v.json["token"].as_str().unwrap().to_string(),
        v.json["deviceToken"].as_str().unwrap().to_string(),
    )
}

async fn signin_with_device(gw: &Gateway, device: &str) -> Answer {
    post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD, "deviceToken": device}),
    )
    .await
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_admin_api() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let a = admin_revoke(
        &gw,
        Some(ADMIN_TOKEN),
        json!({"sessionId": session_id(&token)}),
    )
    .await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(a.json["error"], "Not Found");
    assert_eq!(admin_get(&gw, "/admin/revoke").await.status, 404);
    assert_accepted(&gw, &up, &token).await;
}

#[tokio::test]
async fn the_admin_token_is_required_and_requests_are_checked() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, memory());
    let token = signin(&gw).await;
    let body = json!({"sessionId": session_id(&token)});

    let wrong = "admin-token-for-tests-012345678X";
    for bearer in [None, Some(wrong), Some("")] {
        let a = admin_revoke(&gw, bearer, body.clone()).await;
        assert_eq!(a.status, 401, "{}", a.text);
        assert_eq!(a.json["error"], "Unauthorized");
        assert!(a.json["message"].is_string());
        assert!(a.headers.contains_key("www-authenticate"));
    }
    let basic = read(
        client()
            .post(format!("http://{}/admin/revoke", gw.admin))
            .basic_auth("admin", Some(ADMIN_TOKEN))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(basic.status, 401, "only a bearer token: {}", basic.text);
    assert_accepted(&gw, &up, &token).await;
    let log = gw.log();
    assert!(log.contains("admin API request refused"), "{log}");
    assert!(!log.contains(wrong), "the presented value is never logged");
    assert!(!log.contains(ADMIN_TOKEN), "nor the admin token");

    // Authorized, but not a request the API understands.
    let get = read(
        client()
            .get(format!("http://{}/admin/revoke", gw.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(get.status, 405, "{}", get.text);
    for bad in [
        json!({}),
        json!({"sessionId": "a", "userId": USER_ID}),
        json!({"sessionID": "a"}),
        json!({"issuedBefore": "yesterday"}),
        json!({"issuedBefore": now() + 3600}),
        json!(["sessionId"]),
    ] {
        let a = revoke(&gw, bad.clone()).await;
        assert_eq!(a.status, 400, "{bad}: {}", a.text);
        assert_eq!(a.json["error"], "Bad Request");
        assert!(a.json["message"].is_string());
    }
    let unknown = revoke(&gw, json!({"sessionId": "0".repeat(32)})).await;
    assert_error(&unknown, 404, "Not Found", "No live session has this id");
    let nobody = revoke(&gw, json!({"userId": "nobody"})).await;
    assert_error(&nobody, 404, "Not Found", "No user has this id");
    assert_eq!(admin_get(&gw, "/admin/other").await.status, 404);
    assert_accepted(&gw, &up, &token).await;
}

#[tokio::test]
async fn revoke_one_session_by_id() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, memory());
    let stolen = signin(&gw).await;
    let other = signin(&gw).await;
    assert_accepted(&gw, &up, &stolen).await;

    let a = revoke(&gw, json!({"sessionId": session_id(&stolen)})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json, json!({"revoked": 1}));
    assert_refused(&gw, &up, &stolen).await;
    assert_accepted(&gw, &up, &other).await;
    let refresh = read(
        client()
            .post(gw.url("/api/user/refresh/profile"))
            .header("x-access-token", &stolen)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&refresh, 401, "Session expired", "session expired");

    let again = revoke(&gw, json!({"sessionId": session_id(&stolen)})).await;
    assert_eq!(again.status, 404, "already revoked: {}", again.text);
    assert!(gw.log().contains("admin revocation"));
}

#[tokio::test]
async fn revoke_a_user_ends_every_session_and_forgets_trusted_devices() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, with_mfa(memory(), &hook));
    let (first, device) = signin_with_mfa(&gw, &hook).await;
    let trusted = signin_with_device(&gw, &device).await;
    let second = trusted.json["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a trusted device skips MFA: {}", trusted.text))
        .to_string();
    assert_accepted(&gw, &up, &first).await;
    assert_accepted(&gw, &up, &second).await;

    let a = revoke(&gw, json!({"userId": USER_ID})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json, json!({"revoked": 2}));
    assert_refused(&gw, &up, &first).await;
    assert_refused(&gw, &up, &second).await;
    let after = signin_with_device(&gw, &device).await;
    assert_eq!(
        after.json["mfaRequired"], true,
        "the device is no longer trusted: {}",
        after.text
    );
}

#[tokio::test]
async fn revoke_every_token_issued_before_a_time() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, memory());
    let old = signin(&gw).await;
    assert_accepted(&gw, &up, &old).await;
    let cut_off = next_second().await;

    let a = revoke(&gw, json!({"issuedBefore": cut_off})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json,
        json!({"revoked": "issuedBefore", "issuedBefore": cut_off})
    );
    assert_refused(&gw, &up, &old).await;
    let new = signin(&gw).await;
    assert!(claims(&new)["iat"].as_i64().unwrap() >= cut_off);
    assert_accepted(&gw, &up, &new).await;

    // The cut-off never moves back.
    let earlier = revoke(&gw, json!({"issuedBefore": cut_off - 100})).await;
    assert_eq!(earlier.json["issuedBefore"], cut_off, "{}", earlier.text);
    assert_refused(&gw, &up, &old).await;
}

#[tokio::test]
async fn revocations_on_one_instance_hold_on_another_within_a_second() {
    let redis = RedisServer::start();
    let hook = Upstream::start();
    let up = Upstream::start();
    let a = Gateway::start(&up, with_mfa(redis_opts(&redis), &hook));
    let b = Gateway::start(&up, with_mfa(redis_opts(&redis), &hook));

    // One session, by id.
    let (token, _) = signin_with_mfa(&a, &hook).await;
    let sid = session_id(&token);
    assert_eq!(
        redis.query::<String>(&["GET", &format!("ag:sid:{{{sid}}}")]),
        USER_ID,
        "the session's owner, by id"
    );
    assert_accepted(&a, &up, &token).await;
    assert_accepted(&b, &up, &token).await;
    let answer = revoke(&a, json!({"sessionId": sid})).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    assert_eq!(answer.json, json!({"revoked": 1}), "{}", answer.text);
    refused_by(&b, &up, &token, deadline).await;
    assert_refused(&a, &up, &token).await;
    assert_eq!(
        redis.query::<i64>(&["EXISTS", &format!("ag:sid:{{{sid}}}")]),
        0
    );

    // A user: every session, and the trusted device.
    let (first, device) = signin_with_mfa(&a, &hook).await;
    let second = signin_with_device(&b, &device).await.json["token"]
        .as_str()
        .expect("a trusted device skips MFA")
        .to_string();
    for token in [&first, &second] {
        assert_accepted(&a, &up, token).await;
        assert_accepted(&b, &up, token).await;
    }
    let device_keys = format!("ag:{{u:{USER_ID}}}:dev*");
    assert!(
        !redis
            .query::<Vec<String>>(&["KEYS", &device_keys])
            .is_empty()
    );
    let answer = revoke(&a, json!({"userId": USER_ID})).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    assert_eq!(answer.json, json!({"revoked": 2}), "{}", answer.text);
    refused_by(&b, &up, &first, deadline).await;
    refused_by(&b, &up, &second, deadline).await;
    assert!(
        redis
            .query::<Vec<String>>(&["KEYS", &device_keys])
            .is_empty(),
        "the trusted devices are gone"
    );
    assert!(
        redis.query::<Vec<String>>(&["KEYS", "ag:sid:*"]).is_empty(),
        "so are the sessions' owner entries"
    );
    assert_eq!(
        signin_with_device(&b, &device).await.json["mfaRequired"],
        true
    );

    // Every token issued before a time.
    let (old, _) = signin_with_mfa(&b, &hook).await;
    assert_accepted(&a, &up, &old).await;
    assert_accepted(&b, &up, &old).await;
    let cut_off = next_second().await;
    let answer = revoke(&a, json!({"issuedBefore": cut_off})).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    assert_eq!(answer.json["issuedBefore"], cut_off, "{}", answer.text);
    refused_by(&b, &up, &old, deadline).await;
    assert_refused(&a, &up, &old).await;
    let (new, _) = signin_with_mfa(&b, &hook).await;
    assert_accepted(&a, &up, &new).await;
    assert_accepted(&b, &up, &new).await;
}

#[tokio::test]
async fn the_cut_off_survives_a_restart_and_reaches_new_instances() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let mut a = Gateway::start(&up, redis_opts(&redis));
    let old = signin(&a).await;
    assert_accepted(&a, &up, &old).await;
    let cut_off = next_second().await;
    let answer = revoke(&a, json!({"issuedBefore": cut_off})).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        redis.query::<String>(&["GET", "ag:not_before"]),
        cut_off.to_string()
    );

    a.kill9();
    a.restart();
    assert_refused(&a, &up, &old).await;
    let c = Gateway::start(&up, redis_opts(&redis));
    assert_refused(&c, &up, &old).await;
    let new = signin(&c).await;
    assert_accepted(&a, &up, &new).await;
    assert_accepted(&c, &up, &new).await;
}

/// A cut-off written to Redis without an announcement (a lost message) still takes effect
/// within a second: every instance reads it again once a second.
#[tokio::test]
async fn a_missed_announcement_still_holds_within_a_second() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let a = Gateway::start(&up, redis_opts(&redis));
    let old = signin(&a).await;
    assert_accepted(&a, &up, &old).await;
    let cut_off = next_second().await;
    let _: () = redis.query(&["SET", "ag:not_before", &cut_off.to_string()]);
    // Read every second, and each read may take up to the Redis deadline on a busy machine.
    refused_by(&a, &up, &old, Instant::now() + Duration::from_millis(1_600)).await;
}
