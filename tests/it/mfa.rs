//! A user with email MFA signs in: the gateway mails a code, the user proves it once, and the
//! device is trusted from then on. Super accounts are enrolled when the mandatory rollout fires.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const SUPER_EMAIL: &str = "root@mydomain.com";
const SUPER_PASSWORD: &str = "super-secret-pass";

fn users_with_mfa() -> String {
    let hash = bcrypt::hash(SUPER_PASSWORD, 4).unwrap();
    format!(
        "{}\n[[users]]\nid = \"u-super\"\nemail = \"{SUPER_EMAIL}\"\npassword_hash = \"{hash}\"\nfirst_name = \"Ro\"\nlast_name = \"Ot\"\naccount_type = \"super\"\norg = \"{ORG_ID}\"\n",
        sample_users().replace("mfa_enabled = false", "mfa_enabled = true")
    )
}

fn mfa_options(hook: &Upstream, mfa_extra: &str) -> Options {
    Options {
        users_toml: Some(users_with_mfa()),
        rate_limit_section: "[rate_limit]\nauth_per_minute = 1000\n".into(),
        extra_toml: format!(
            "[mfa]\ndelivery = \"webhook\"\nwebhook_url = \"http://{}/mail\"\n{mfa_extra}",
            hook.addr
        ),
        ..Options::default()
    }
}

async fn signin_with(gw: &Gateway, email: &str, password: &str, extra: Value) -> Answer {
    let mut body = json!({"email": email, "password": password});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    post_json(&gw.url("/api/auth/signin"), body).await
}

/// The id of the challenge a right password starts for the MFA user.
async fn new_challenge(gw: &Gateway) -> String {
    signin_with(gw, EMAIL, PASSWORD, json!({})).await.json["challengeId"]
        .as_str()
        .expect("a challenge id")
        .to_string()
}

async fn verify(gw: &Gateway, challenge: &str, code: &str) -> Answer {
    post_json(
        &gw.url("/api/auth/mfa/verify"),
        json!({"challengeId": challenge, "code": code}),
    )
    .await
}

/// The code the webhook received for `challenge`.
fn code_for(hook: &Upstream, challenge: &str) -> String {
    let seen = hook.requests();
    let body: Value = seen
        .iter()
        .rev()
        .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap())
        .find(|b| b["challengeId"] == challenge)
        .expect("the webhook got this challenge");
    body["code"].as_str().unwrap().to_string()
}

fn wrong(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[tokio::test]
async fn challenge_then_verify_through_the_webhook() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, ""));
    let a = signin_with(&gw, EMAIL, PASSWORD, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["mfaRequired"], true);
    assert_eq!(a.json["maskedEmail"], "j*****e@mydomain.com");
    assert!(a.json.get("token").is_none(), "no token before the code");
    assert!(a.json.get("mandatorySuper").is_none(), "absent, not false");
    let challenge = a.json["challengeId"].as_str().unwrap().to_string();
    assert_eq!(challenge.len(), 24);
    assert!(
        challenge
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );

    let mail = hook.last();
    assert_eq!(mail.method, "POST");
    assert_eq!(mail.uri, "/mail");
    let payload: Value = serde_json::from_slice(&mail.body).unwrap();
    assert_eq!(payload["to"], EMAIL);
    assert_eq!(payload["challengeId"], challenge.as_str());
    let code = payload["code"].as_str().unwrap().to_string();
    assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));
    // The code is stored hashed, never in clear, and never logged.
    assert!(!gw.log().contains(&code));

    let v = verify(&gw, &challenge, &code).await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.json["profile"]["_id"], USER_ID);
    let token = v.json["token"].as_str().unwrap();
    assert_eq!(claims(token)["_id"], USER_ID);
    let device = v.json["deviceToken"].as_str().unwrap();
    assert!(device.len() >= 32);
    let cookie = v.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with(&format!("authgate_device={device};")),
        "{cookie}"
    );
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    assert!(cookie.contains("Max-Age=2592000"), "thirty days: {cookie}");

    let r = client()
        .get(gw.url("/x"))
        .header("x-access-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Single use.
    let again = verify(&gw, &challenge, &code).await;
    assert_eq!(again.status, 410, "{}", again.text);
    assert!(again.json["error"].is_string() && again.json["message"].is_string());
}

#[tokio::test]
async fn five_wrong_codes_kill_the_challenge() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, ""));
    let challenge = new_challenge(&gw).await;
    let code = code_for(&hook, &challenge);
    for _ in 0..5 {
        let a = verify(&gw, &challenge, &wrong(&code)).await;
        assert_error(
            &a,
            401,
            "Invalid code",
            "The verification code is incorrect",
        );
    }
    let sixth = verify(&gw, &challenge, &code).await;
    assert_eq!(
        sixth.status, 410,
        "the right code is refused after five wrong ones: {}",
        sixth.text
    );
    assert_eq!(sixth.json["error"], "Too many attempts");
}

#[tokio::test]
async fn concurrent_wrong_guesses_are_all_counted() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, ""));
    let challenge = new_challenge(&gw).await;
    let code = code_for(&hook, &challenge);
    let mut tasks = vec![];
    for i in 0..12 {
        let (url, challenge) = (gw.url("/api/auth/mfa/verify"), challenge.clone());
        let guess = format!("{:06}", (code.parse::<u32>().unwrap() + 1 + i) % 1_000_000);
        tasks.push(tokio::spawn(async move {
            post_json(&url, json!({"challengeId": challenge, "code": guess}))
                .await
                .status
        }));
    }
    let mut statuses = vec![];
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 410).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(verify(&gw, &challenge, &code).await.status, 410);
}

#[tokio::test]
async fn codes_expire_and_belong_to_their_own_challenge() {
    // Codes of two live challenges do not cross (with the default lifetime, so that neither
    // expires however slowly the machine runs).
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, ""));
    let first = new_challenge(&gw).await;
    let second = new_challenge(&gw).await;
    let first_code = code_for(&hook, &first);
    let second_code = code_for(&hook, &second);
    if first_code != second_code {
        let crossed = verify(&gw, &second, &first_code).await;
        assert_eq!(
            crossed.status, 401,
            "a code only works for its own challenge: {}",
            crossed.text
        );
    }
    drop(gw);

    // A code past its lifetime (one second here) is refused as expired.
    let hook = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, "code_ttl_secs = 1\n"));
    let first = new_challenge(&gw).await;
    let first_code = code_for(&hook, &first);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = verify(&gw, &first, &first_code).await;
    assert_eq!(late.status, 410, "{}", late.text);
    assert_eq!(late.json["error"], "Challenge expired");
    assert_eq!(
        verify(&gw, "000000000000000000000000", "123456")
            .await
            .status,
        410
    );
    let bad = post_json(
        &gw.url("/api/auth/mfa/verify"),
        json!({"challengeId": first}),
    )
    .await;
    assert_eq!(bad.status, 400);
}

async fn verified_device(gw: &Gateway, hook: &Upstream) -> (String, String) {
    let challenge = new_challenge(gw).await;
    let v = verify(gw, &challenge, &code_for(hook, &challenge)).await;
    assert_eq!(v.status, 200, "{}", v.text);
    (
        v.json["token"].as_str().unwrap().to_string(),
        v.json["deviceToken"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_trusted_device_skips_the_challenge_until_revoked() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, ""));
    let (token, device) = verified_device(&gw, &hook).await;

    let by_body = signin_with(&gw, EMAIL, PASSWORD, json!({"deviceToken": device})).await;
    assert_eq!(by_body.status, 200, "{}", by_body.text);
    assert!(by_body.json["token"].is_string(), "{}", by_body.text);
    assert!(by_body.json.get("mfaRequired").is_none());

    let by_cookie = read(
        client()
            .post(gw.url("/api/auth/signin"))
            .header("cookie", format!("theme=dark; authgate_device={device}"))
            .json(&json!({"email": EMAIL, "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(by_cookie.json["token"].is_string(), "{}", by_cookie.text);

    // Another user's device token, or a made-up one, does not help.
    let forged = signin_with(&gw, EMAIL, PASSWORD, json!({"deviceToken": "f".repeat(64)})).await;
    assert_eq!(forged.json["mfaRequired"], true);

    // Signing out everywhere forgets the device.
    let out = read(
        client()
            .post(gw.url("/api/auth/signout-all"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(out.status, 200, "{}", out.text);
    let after = signin_with(&gw, EMAIL, PASSWORD, json!({"deviceToken": device})).await;
    assert_eq!(after.json["mfaRequired"], true, "{}", after.text);
    let r = client()
        .get(gw.url("/x"))
        .header("x-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "signout-all ended the sessions");

    // So does a password change.
    let (token, device) = verified_device(&gw, &hook).await;
    let change = read(
        client()
            .post(gw.url("/api/auth/change-password"))
            .header("x-access-token", &token)
            .json(&json!({"currentPassword": PASSWORD, "newPassword": "a whole new password"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(change.status, 200, "{}", change.text);
    let after = signin_with(
        &gw,
        EMAIL,
        "a whole new password",
        json!({"deviceToken": device}),
    )
    .await;
    assert_eq!(after.json["mfaRequired"], true, "{}", after.text);
}

#[tokio::test]
async fn login_clients_get_user_and_firm_after_verify() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, ""));
    let a = post_json(
        &gw.url("/api/auth/login"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(a.json["mfaRequired"], true, "{}", a.text);
    let challenge = a.json["challengeId"].as_str().unwrap();
    let v = verify(&gw, challenge, &code_for(&hook, challenge)).await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.json["user"]["id"], USER_ID);
    assert_eq!(v.json["firm"]["id"], ORG_ID);
    assert!(v.json.get("profile").is_none());
}

#[tokio::test]
async fn failed_delivery_is_502_and_leaves_no_usable_challenge() {
    let hook = Upstream::start_with_status(500);
    let up = Upstream::start();
    let gw = Gateway::start(&up, mfa_options(&hook, ""));
    let a = signin_with(&gw, EMAIL, PASSWORD, json!({})).await;
    assert_eq!(a.status, 502, "{}", a.text);
    assert_eq!(a.json["error"], "Delivery failed");
    assert!(a.json.get("challengeId").is_none());
    let sent: Value = serde_json::from_slice(&hook.last().body).unwrap();
    let v = verify(
        &gw,
        sent["challengeId"].as_str().unwrap(),
        sent["code"].as_str().unwrap(),
    )
    .await;
    assert_eq!(v.status, 410, "{}", v.text);

    // A receiver that is not there at all.
    let gone = Gateway::start(
        &up,
        Options {
            extra_toml: format!(
                "[mfa]\ndelivery = \"webhook\"\nwebhook_url = \"http://127.0.0.1:{}/mail\"\n",
                free_port()
            ),
            ..mfa_options(&hook, "")
        },
    );
    let a = signin_with(&gone, EMAIL, PASSWORD, json!({})).await;
    assert_eq!(a.status, 502, "{}", a.text);
}

#[tokio::test]
async fn super_mandatory_enrolls_super_accounts_after_the_rollout() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let past = "super_rollout_date = \"2020-01-01T00:00:00Z\"\n";
    let gw = Gateway::start(
        &up,
        Options {
            env: vec![("MFA_SUPER_MANDATORY".into(), "true".into())],
            ..mfa_options(&hook, past)
        },
    );
    let a = signin_with(&gw, SUPER_EMAIL, SUPER_PASSWORD, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["mfaRequired"], true);
    assert_eq!(a.json["mandatorySuper"], true);
    assert_eq!(a.json["maskedEmail"], "r*****t@mydomain.com");
    // Not for users who already have MFA: the flag is absent.
    let normal = signin_with(&gw, EMAIL, PASSWORD, json!({})).await;
    assert!(
        normal.json.get("mandatorySuper").is_none(),
        "{}",
        normal.text
    );

    let challenge = a.json["challengeId"].as_str().unwrap();
    let v = verify(&gw, challenge, &code_for(&hook, challenge)).await;
    assert_eq!(v.status, 200, "{}", v.text);
    let device = v.json["deviceToken"].as_str().unwrap().to_string();
    let file = std::fs::read_to_string(gw.users_path()).unwrap();
    let parsed: toml::Value = toml::from_str(&file).unwrap();
    let root = parsed["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"].as_str() == Some(SUPER_EMAIL))
        .unwrap()
        .clone();
    assert_eq!(
        root["mfa_enabled"].as_bool(),
        Some(true),
        "mfaEnabled saved"
    );

    // Next signin: the trusted-device path, or a normal challenge without the flag.
    let trusted = signin_with(
        &gw,
        SUPER_EMAIL,
        SUPER_PASSWORD,
        json!({"deviceToken": device}),
    )
    .await;
    assert!(trusted.json["token"].is_string(), "{}", trusted.text);
    let again = signin_with(&gw, SUPER_EMAIL, SUPER_PASSWORD, json!({})).await;
    assert_eq!(again.json["mfaRequired"], true);
    assert!(again.json.get("mandatorySuper").is_none(), "{}", again.text);
}

#[tokio::test]
async fn super_mandatory_does_not_fire_before_the_rollout_or_when_off() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let future = "super_rollout_date = \"2099-01-01T00:00:00Z\"\n";
    let early = Gateway::start(
        &up,
        Options {
            env: vec![("MFA_SUPER_MANDATORY".into(), "true".into())],
            ..mfa_options(&hook, future)
        },
    );
    let a = signin_with(&early, SUPER_EMAIL, SUPER_PASSWORD, json!({})).await;
    assert!(a.json["token"].is_string(), "{}", a.text);
    assert!(a.json.get("mandatorySuper").is_none());

    let off = Gateway::start(
        &up,
        mfa_options(&hook, "super_rollout_date = \"2020-01-01T00:00:00Z\"\n"),
    );
    let a = signin_with(&off, SUPER_EMAIL, SUPER_PASSWORD, json!({})).await;
    assert!(a.json["token"].is_string(), "{}", a.text);

    let by_config = Gateway::start(
        &up,
        mfa_options(
            &hook,
            "super_mandatory = true\nsuper_rollout_date = \"2020-01-01T00:00:00Z\"\n",
        ),
    );
    let a = signin_with(&by_config, SUPER_EMAIL, SUPER_PASSWORD, json!({})).await;
    assert_eq!(a.json["mandatorySuper"], true, "{}", a.text);
}

#[tokio::test]
async fn codes_arrive_by_smtp() {
    let smtp = SmtpReceiver::start();
    let up = Upstream::start();
    let opts = Options {
        users_toml: Some(users_with_mfa()),
        extra_toml: format!(
            "[mfa]\ndelivery = \"smtp\"\n[mfa.smtp]\nhost = \"127.0.0.1\"\nport = {}\nfrom = \"no-reply@example.com\"\n",
            smtp.port
        ),
        ..Options::default()
    };
    let gw = Gateway::start(&up, opts);
    let a = signin_with(&gw, EMAIL, PASSWORD, json!({})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let challenge = a.json["challengeId"].as_str().unwrap();
    let mail = smtp.messages().pop().expect("a message was delivered");
    assert!(mail.contains(&format!("To: {EMAIL}")), "{mail}");
    assert!(mail.contains("From: no-reply@example.com"), "{mail}");
    let code = six_digits(&mail).expect("a code in the mail");
    let v = verify(&gw, challenge, &code).await;
    assert_eq!(v.status, 200, "{}", v.text);

    // SMTP down: 502, no challenge.
    let dead = Gateway::start(
        &up,
        Options {
            users_toml: Some(users_with_mfa()),
            extra_toml: format!(
                "[mfa]\ndelivery = \"smtp\"\n[mfa.smtp]\nhost = \"127.0.0.1\"\nport = {}\n",
                free_port()
            ),
            ..Options::default()
        },
    );
    let a = signin_with(&dead, EMAIL, PASSWORD, json!({})).await;
    assert_eq!(a.status, 502, "{}", a.text);
}

#[tokio::test]
async fn verify_is_rate_limited_like_signin() {
    let hook = Upstream::start();
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: String::new(),
            ..mfa_options(&hook, "")
        },
    );
    let mut statuses = vec![];
    for _ in 0..11 {
        statuses.push(
            verify(&gw, "000000000000000000000000", "123456")
                .await
                .status,
        );
    }
    assert_eq!(statuses[..10], [410; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429);
}

#[tokio::test]
async fn across_redis_instances() {
    let redis = RedisServer::start();
    let hook = Upstream::start();
    let up = Upstream::start();
    let opts = || Options {
        store_section: Some(redis_store(&format!("\"{}\"", redis.url()), "")),
        ..mfa_options(&hook, "")
    };
    let a = Gateway::start(&up, opts());
    let b = Gateway::start(&up, opts());

    let challenge = new_challenge(&a).await;
    let code = code_for(&hook, &challenge);
    let keys: Vec<String> = redis.query(&["KEYS", "ag:mfa:*"]);
    assert_eq!(keys.len(), 1);
    let stored: String = redis.query(&["GET", &keys[0]]);
    assert!(!stored.contains(&code), "only the hash is stored");
    let ttl: i64 = redis.query(&["TTL", &keys[0]]);
    assert!((590..=600).contains(&ttl), "{ttl}");

    // Wrong guesses on both instances count against one budget.
    for i in 0..5 {
        let gw = if i % 2 == 0 { &a } else { &b };
        assert_eq!(verify(gw, &challenge, &wrong(&code)).await.status, 401);
    }
    assert_eq!(verify(&b, &challenge, &code).await.status, 410);

    // Challenge on A, verified on B; the device is trusted on A too.
    let challenge = new_challenge(&a).await;
    let v = verify(&b, &challenge, &code_for(&hook, &challenge)).await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(
        verify(&a, &challenge, &code_for(&hook, &challenge))
            .await
            .status,
        410,
        "used up everywhere"
    );
    let device = v.json["deviceToken"].as_str().unwrap();
    let trusted = signin_with(&a, EMAIL, PASSWORD, json!({"deviceToken": device})).await;
    assert!(trusted.json["token"].is_string(), "{}", trusted.text);
}

#[tokio::test]
async fn the_owners_trusted_device_gets_in_while_the_account_is_locked() {
    let hook = Upstream::start();
    let mut opts = mfa_options(&hook, "");
    opts.server_section = "trusted_proxies = [\"127.0.0.1/32\"]\n".into();
    opts.rate_limit_section = "[rate_limit]\nauth_per_minute = 1000\naccount_failures = 3\n".into();
    let gw = Gateway::start(&hook, opts);
    let (_, device) = verified_device(&gw, &hook).await;
    // An attacker locks the account from many addresses.
    for i in 0..4 {
        let a = read(
            client()
                .post(gw.url("/api/auth/signin"))
                .header("x-forwarded-for", format!("198.51.100.{i}"))
                .json(&json!({"email": EMAIL, "password": "guess"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, if i < 3 { 401 } else { 429 }, "{}", a.text);
    }
    // Without the device, even the owner is refused; with it, the owner gets in.
    let a = signin_with(&gw, EMAIL, PASSWORD, json!({})).await;
    assert_eq!(a.status, 429, "{}", a.text);
    let a = signin_with(&gw, EMAIL, PASSWORD, json!({"deviceToken": device})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["token"].is_string(), "{}", a.text);
}
