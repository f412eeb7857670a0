//! A signed-in user keeps a session alive with refresh and ends it with signout.

use crate::common::*;
use serde_json::json;

async fn refresh(gw: &Gateway, token: &str) -> Answer {
    read(
        client()
            .post(gw.url("/api/user/refresh/profile"))
            .header("x-access-token", token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get_with(gw: &Gateway, token: &str) -> Answer {
    read(
        client()
            .get(gw.url("/data"))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn refresh_slides_the_same_session() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            token_section: format!("[token]\nsecret = \"{SECRET}\"\nvalidity_secs = 60\n"),
            ..Options::default()
        },
    );
    let first = signin(&gw).await;
    // iat has one-second resolution: make sure the new token is issued later.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let a = refresh(&gw, &first).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["profile"]["_id"], USER_ID);
    assert_eq!(a.json["profile"]["institution"]["_id"], ORG_ID);
    let second = a.json["token"].as_str().unwrap().to_string();
    let (c1, c2) = (claims(&first), claims(&second));
    assert_eq!(c1["sessionId"], c2["sessionId"], "same session");
    assert!(c2["exp"].as_i64() > c1["exp"].as_i64(), "new expiry");
    assert_eq!(
        c2["exp"].as_i64().unwrap() - c2["iat"].as_i64().unwrap(),
        60,
        "a full lifetime from now"
    );

    // Both tokens work until the session ends.
    assert_eq!(get_with(&gw, &first).await.status, 200);
    assert_eq!(get_with(&gw, &second).await.status, 200);
}

#[tokio::test]
async fn refresh_accepts_every_token_location() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let url = gw.url("/api/user/refresh/profile");
    let bearer = client()
        .post(&url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    let query = client()
        .post(format!("{url}?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(query.status(), 200);
    let body = client()
        .post(&url)
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    let none = read(client().post(&url).send().await.unwrap()).await;
    assert_error(
        &none,
        401,
        "Authentication Required",
        "Authentication Required",
    );
}

#[tokio::test]
async fn signout_revokes_the_session_at_once() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let refreshed = refresh(&gw, &token).await.json["token"]
        .as_str()
        .unwrap()
        .to_string();
    let other_session = signin(&gw).await;

    let a = read(
        client()
            .post(gw.url("/api/auth/signout"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.json["message"].is_string());

    let before = up.count();
    for t in [&token, &refreshed] {
        assert_error(
            &get_with(&gw, t).await,
            401,
            "Session expired",
            "session expired",
        );
        assert_error(
            &refresh(&gw, t).await,
            401,
            "Session expired",
            "session expired",
        );
    }
    assert_eq!(up.count(), before, "a revoked token reached the upstream");
    let again = read(
        client()
            .post(gw.url("/api/auth/signout"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&again, 401, "Session expired", "session expired");

    // Another session of the same user is untouched.
    assert_eq!(get_with(&gw, &other_session).await.status, 200);
}

#[tokio::test]
async fn expired_token_cannot_be_refreshed() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let mut c = claims(&token);
    c["exp"] = json!(now() - 1);
    let a = refresh(&gw, &sign(&c, SECRET)).await;
    assert_error(&a, 401, "Token expired", "jwt expired");
}
