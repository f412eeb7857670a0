//! Praxis Legal clients (seed 003) register a firm, log in, read their account and change their
//! password, from the same user store as the Pria clients.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

const NEW_EMAIL: &str = "jane@example.com";
const NEW_PASSWORD: &str = "correct horse battery";

fn registration(email: &str) -> Value {
    json!({"email": email, "password": NEW_PASSWORD, "firstName": "Jane", "lastName": "Roe", "firmName": "Roe & Partners"})
}

fn lenient() -> Options {
    Options {
        rate_limit_section: "[rate_limit]\nauth_per_minute = 1000\n".into(),
        ..Options::default()
    }
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

async fn me(gw: &Gateway, token: &str) -> Answer {
    read(
        client()
            .get(gw.url("/api/auth/me"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn change_password(gw: &Gateway, token: &str, current: &str, new: &str) -> Answer {
    read(
        client()
            .post(gw.url("/api/auth/change-password"))
            .header("authorization", format!("Bearer {token}"))
            .json(&json!({"currentPassword": current, "newPassword": new}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn login(gw: &Gateway, email: &str, password: &str) -> Answer {
    post_json(
        &gw.url("/api/auth/login"),
        json!({"email": email, "password": password}),
    )
    .await
}

#[tokio::test]
async fn register_creates_an_admin_of_a_new_trial_firm() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, lenient());
    // The body cannot pick its role, tier or status.
    let mut body = registration(NEW_EMAIL);
    body["role"] = json!("super");
    body["accountType"] = json!("super");
    body["subscriptionTier"] = json!("enterprise");
    let a = post_json(&gw.url("/api/auth/register"), body).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let (user, firm) = (&a.json["user"], &a.json["firm"]);
    assert!(is_uuid(&user["id"]), "{user}");
    assert_eq!(user["email"], NEW_EMAIL);
    assert_eq!(user["firstName"], "Jane");
    assert_eq!(user["lastName"], "Roe");
    assert_eq!(user["role"], "admin");
    assert!(is_uuid(&firm["id"]));
    assert_eq!(user["firmId"], firm["id"]);
    assert_eq!(firm["name"], "Roe & Partners");
    assert_eq!(firm["subscriptionTier"], "trial");
    let expiry =
        chrono::DateTime::parse_from_rfc3339(firm["subscriptionExpiry"].as_str().unwrap()).unwrap();
    let days = (expiry.timestamp() - now()) as f64 / 86_400.0;
    assert!((13.9..=14.1).contains(&days), "trial of {days} days");

    let c = claims(a.json["token"].as_str().unwrap());
    assert_eq!(c["_id"], user["id"]);
    assert_eq!(c["accountType"], "admin");

    // The token works at once, for the gateway and the upstream.
    let r = client()
        .get(gw.url("/api/cases"))
        .header(
            "authorization",
            format!("Bearer {}", a.json["token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.last().header("x-account-type").as_deref(), Some("admin"));

    // Written to the users file, with an argon2id hash and never the password.
    let file = std::fs::read_to_string(gw.users_path()).unwrap();
    assert!(file.contains(NEW_EMAIL));
    assert!(file.contains("$argon2id$"));
    assert!(!file.contains(NEW_PASSWORD));
}

#[tokio::test]
async fn register_login_me_and_change_password() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, lenient());
    let reg = post_json(&gw.url("/api/auth/register"), registration(NEW_EMAIL)).await;
    assert_eq!(reg.status, 200, "{}", reg.text);
    let other_session = reg.json["token"].as_str().unwrap().to_string();

    let l = login(&gw, "Jane@Example.com", NEW_PASSWORD).await;
    assert_eq!(l.status, 200, "{}", l.text);
    assert_eq!(l.json["user"], reg.json["user"]);
    assert_eq!(l.json["firm"], reg.json["firm"]);
    assert!(l.json.get("profile").is_none());
    let token = l.json["token"].as_str().unwrap().to_string();

    let m = me(&gw, &token).await;
    assert_eq!(m.status, 200, "{}", m.text);
    assert_eq!(m.json["user"], reg.json["user"]);
    assert_eq!(m.json["firm"], reg.json["firm"]);
    assert!(m.json.get("token").is_none());

    let wrong = change_password(&gw, &token, "not my password", "another long password").await;
    assert_eq!(wrong.status, 401, "{}", wrong.text);
    assert!(wrong.json["error"].is_string() && wrong.json["message"].is_string());

    let ok = change_password(&gw, &token, NEW_PASSWORD, "another long password").await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json, json!({"message": "Password changed successfully"}));

    assert_error(
        &login(&gw, NEW_EMAIL, NEW_PASSWORD).await,
        401,
        "Invalid email or password",
        "Invalid email or password",
    );
    assert_eq!(
        login(&gw, NEW_EMAIL, "another long password").await.status,
        200
    );
    assert_error(
        &me(&gw, &other_session).await,
        401,
        "Session expired",
        "session expired",
    );
    assert_eq!(
        me(&gw, &token).await.status,
        200,
        "the caller's own session is kept"
    );
}

#[tokio::test]
async fn login_serves_the_seed_user_as_user_and_firm() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let l = login(&gw, EMAIL, PASSWORD).await;
    assert_eq!(l.status, 200, "{}", l.text);
    assert_eq!(
        l.json["user"],
        json!({"id": USER_ID, "email": EMAIL, "firstName": "John", "lastName": "Doe", "role": "user", "firmId": ORG_ID})
    );
    assert_eq!(
        l.json["firm"],
        json!({"id": ORG_ID, "name": "Doe & Associates", "subscriptionTier": "professional", "subscriptionExpiry": "2027-01-15T00:00:00Z"})
    );
    assert_error(
        &login(&gw, EMAIL, "nope").await,
        401,
        "Invalid email or password",
        "Invalid email or password",
    );
    assert_error(
        &login(&gw, "nobody@example.com", "nope").await,
        401,
        "Invalid email or password",
        "Invalid email or password",
    );
}

#[tokio::test]
async fn duplicate_and_bad_registrations_are_refused() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, lenient());
    let url = gw.url("/api/auth/register");
    assert_eq!(post_json(&url, registration(NEW_EMAIL)).await.status, 200);
    let dup = post_json(&url, registration("JANE@example.com")).await;
    assert_eq!(dup.status, 409, "{}", dup.text);
    assert!(dup.json["error"].is_string() && dup.json["message"].is_string());
    assert_eq!(
        post_json(&url, registration(EMAIL)).await.status,
        409,
        "the seed user's email is taken too"
    );

    let mut cases = vec![];
    for field in ["email", "password", "firstName", "lastName"] {
        let mut b = registration("x1@example.com");
        b.as_object_mut().unwrap().remove(field);
        cases.push((format!("missing {field}"), b));
    }
    let mut short = registration("x2@example.com");
    short["password"] = json!("elevenchars");
    cases.push(("11 characters".into(), short));
    let mut long = registration("x3@example.com");
    long["password"] = json!("x".repeat(129));
    cases.push(("129 characters".into(), long));
    let mut bad_email = registration("x4@example.com");
    bad_email["email"] = json!("not-an-email");
    cases.push(("bad email".into(), bad_email));
    let mut blank = registration("x5@example.com");
    blank["firstName"] = json!("   ");
    cases.push(("blank first name".into(), blank));
    let mut typed = registration("x6@example.com");
    typed["password"] = json!(123456789012345_u64);
    cases.push(("number as password".into(), typed));
    for (name, body) in cases {
        let a = post_json(&url, body).await;
        assert_eq!(a.status, 400, "{name}: {}", a.text);
        assert_eq!(a.json["error"], "Bad Request", "{name}");
    }
    let a = read(
        client()
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"email\":")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 400);

    // Exactly 128 characters is fine, and is not truncated: 127 of them do not log in.
    let mut max = registration("max@example.com");
    let pw = "p".repeat(128);
    max["password"] = json!(pw);
    assert_eq!(post_json(&url, max).await.status, 200);
    assert_eq!(login(&gw, "max@example.com", &pw).await.status, 200);
    assert_eq!(login(&gw, "max@example.com", &pw[..127]).await.status, 401);
}

#[tokio::test]
async fn registration_can_be_turned_off_and_is_rate_limited() {
    let up = Upstream::start();
    let closed = Gateway::start(
        &up,
        Options {
            extra_toml: "[register]\nenabled = false\n".into(),
            ..Options::default()
        },
    );
    let a = post_json(&closed.url("/api/auth/register"), registration(NEW_EMAIL)).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.json["message"], "Registration is disabled");

    let gw = Gateway::start(&up, Options::default());
    let mut statuses = vec![];
    for i in 0..11 {
        statuses.push(
            post_json(
                &gw.url("/api/auth/register"),
                json!({"email": format!("u{i}@x.io")}),
            )
            .await
            .status,
        );
    }
    assert_eq!(statuses[..10], [400; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
}

/// Edit the sample users file of a running gateway.
fn edit_users(gw: &Gateway, edit: impl Fn(String) -> String) {
    let text = std::fs::read_to_string(gw.users_path()).unwrap();
    let edited = edit(text.clone());
    assert_ne!(text, edited, "the edit changed nothing");
    std::fs::write(gw.users_path(), edited).unwrap();
}

fn disable_org(text: String) -> String {
    text.replace(
        "status = \"active\"                        # \"active\" | \"disabled\"\nsubscription_tier",
        "status = \"disabled\"\nsubscription_tier",
    )
}

async fn until_status(gw: &Gateway, token: &str, status: u16) -> Answer {
    let start = Instant::now();
    loop {
        let a = me(gw, token).await;
        if a.status == status {
            return a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still {}: {}",
            a.status,
            a.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn disabling_the_firm_applies_to_existing_sessions_after_a_reload() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, lenient());
    let token = signin(&gw).await;
    assert_eq!(me(&gw, &token).await.status, 200);

    edit_users(&gw, disable_org);
    gw.signal("HUP");
    let a = until_status(&gw, &token, 401).await;
    assert_error(
        &a,
        401,
        "Firm account is disabled",
        "Firm account is disabled",
    );
    let r = read(
        client()
            .get(gw.url("/api/cases"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(
        &r,
        401,
        "Firm account is disabled",
        "Firm account is disabled",
    );
    assert_error(
        &login(&gw, EMAIL, PASSWORD).await,
        401,
        "Firm account is disabled",
        "Firm account is disabled",
    );
    let s = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_error(
        &s,
        401,
        "Firm account is disabled",
        "Firm account is disabled",
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn edits_to_the_users_file_are_picked_up_without_a_signal() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, lenient());
    let token = signin(&gw).await;

    // The user is disabled.
    edit_users(&gw, |t| {
        t.replace(
            "status = \"active\"                        # \"active\" | \"disabled\"\nmfa_enabled",
            "status = \"disabled\"\nmfa_enabled",
        )
    });
    let a = until_status(&gw, &token, 401).await;
    assert_error(&a, 401, "Account is disabled", "Account is disabled");

    // A broken file is refused; the gateway keeps the users it had.
    edit_users(&gw, |t| format!("{t}\n[[users]]\nbroken = true\n"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_error(
        &me(&gw, &token).await,
        401,
        "Account is disabled",
        "Account is disabled",
    );
    assert!(gw.log().contains("users file not reloaded"), "{}", gw.log());

    // Back to active, and the firm's subscription has run out.
    std::fs::write(
        gw.users_path(),
        sample_users().replace(
            "subscription_expiry = \"2027-01-15T00:00:00Z\"",
            "subscription_expiry = \"2020-01-01T00:00:00Z\"",
        ),
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let a = me(&gw, &token).await;
        if a.json["error"] == "Firm account is disabled" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{}", a.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn concurrent_registrations_survive_kill_9() {
    let up = Upstream::start();
    let mut gw = Gateway::start(&up, lenient());
    let mut tasks = vec![];
    for i in 0..20 {
        let url = gw.url("/api/auth/register");
        tasks.push(tokio::spawn(async move {
            post_json(&url, registration(&format!("user{i}@firm.example"))).await
        }));
    }
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, 200, "{}", a.text);
    }
    gw.kill9();
    // The file is complete and valid, with all twenty.
    let text = std::fs::read_to_string(gw.users_path()).unwrap();
    let parsed: toml::Value = toml::from_str(&text).expect("valid TOML after kill -9");
    assert_eq!(parsed["users"].as_array().unwrap().len(), 21);
    assert_eq!(parsed["orgs"].as_array().unwrap().len(), 21);

    gw.restart();
    for i in 0..20 {
        let a = login(&gw, &format!("user{i}@firm.example"), NEW_PASSWORD).await;
        assert_eq!(a.status, 200, "user{i}: {}", a.text);
    }
    assert!(
        !signin(&gw).await.is_empty(),
        "the seed user is still there"
    );
}

#[tokio::test]
async fn password_change_survives_kill_9() {
    let up = Upstream::start();
    let mut gw = Gateway::start(&up, lenient());
    let token = signin(&gw).await;
    assert_eq!(
        change_password(&gw, &token, PASSWORD, "a brand new password")
            .await
            .status,
        200
    );
    gw.kill9();
    gw.restart();
    assert_eq!(login(&gw, EMAIL, "a brand new password").await.status, 200);
    assert_eq!(login(&gw, EMAIL, PASSWORD).await.status, 401);
}

#[tokio::test]
async fn me_and_change_password_need_a_valid_token() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, lenient());
    assert_error(
        &me(&gw, "garbage").await,
        401,
        "Invalid token",
        "jwt malformed",
    );
    let a = read(client().get(gw.url("/api/auth/me")).send().await.unwrap()).await;
    assert_error(
        &a,
        401,
        "Authentication Required",
        "Authentication Required",
    );
    let a = change_password(&gw, "garbage", PASSWORD, "whatever whatever").await;
    assert_eq!(a.status, 401);
    let token = signin(&gw).await;
    let short = change_password(&gw, &token, PASSWORD, "short").await;
    assert_eq!(short.status, 400, "{}", short.text);
    let a = read(
        client()
            .post(gw.url("/api/auth/me"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 405);
}
