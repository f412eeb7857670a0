//! A signed-in client calls a backend through the gateway, carrying its token in any of the four
//! places, and the backend learns who it is; bad tokens never reach the backend.

use crate::common::*;
use serde_json::json;

async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    read(req.send().await.unwrap()).await
}

fn assert_identity(seen: &Seen, token: &str) {
    let c = claims(token);
    assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID));
    assert_eq!(seen.header("x-user-email").as_deref(), Some(EMAIL));
    assert_eq!(seen.header("x-account-type").as_deref(), Some("user"));
    assert_eq!(seen.header("x-customer-id").as_deref(), Some("cus_Nxxxxxx"));
    assert_eq!(
        seen.header("x-session-id").as_deref(),
        c["sessionId"].as_str()
    );
}

#[tokio::test]
async fn token_in_each_of_the_four_locations() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;

    // 1. x-access-token
    let a = get(&gw.url("/api/cases"), &[("x-access-token", &token)]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["upstream"], true);
    let seen = up.last();
    assert_eq!(seen.uri, "/api/cases");
    assert_identity(&seen, &token);
    assert_eq!(
        seen.header("x-access-token").as_deref(),
        Some(token.as_str()),
        "token forwarded unchanged"
    );

    // 2. Authorization: Bearer
    let a = get(
        &gw.url("/api/cases"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_identity(&up.last(), &token);

    // 3. ?token=
    let a = get(&gw.url(&format!("/api/cases?page=2&token={token}")), &[]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = up.last();
    assert_identity(&seen, &token);
    assert_eq!(seen.uri, format!("/api/cases?page=2&token={token}"));

    // 4. JSON body field, forwarded byte for byte.
    let body = format!("{{ \"token\": \"{token}\",  \"note\": \"caf\\u00e9\", \"n\": [1, 2.50] }}");
    let r = client()
        .post(gw.url("/api/notes"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    let a = read(r).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let seen = up.last();
    assert_eq!(seen.method, "POST");
    assert_identity(&seen, &token);
    assert_eq!(seen.body, body.as_bytes());

    // Access is logged (within moments: the log is written in batches), but never the token.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gw.log().contains("token=REDACTED") {
        assert!(std::time::Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!gw.log().contains(&token), "a token leaked into the log");
}

#[tokio::test]
async fn first_present_location_decides_even_when_invalid() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let before = up.count();

    // A broken x-access-token is not rescued by a valid Bearer, query or body token.
    let a = get(
        &gw.url(&format!("/x?token={token}")),
        &[
            ("x-access-token", "garbage"),
            ("authorization", &format!("Bearer {token}")),
        ],
    )
    .await;
    assert_error(&a, 401, "Invalid token", "jwt malformed");
    let a = get(
        &gw.url(&format!("/x?token={token}")),
        &[("authorization", "Bearer garbage")],
    )
    .await;
    assert_error(&a, 401, "Invalid token", "jwt malformed");
    let r = client()
        .post(gw.url("/x?token=garbage"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_error(&read(r).await, 401, "Invalid token", "jwt malformed");
    assert_eq!(up.count(), before, "nothing refused reached the upstream");

    // A valid earlier location wins over a broken later one.
    let a = get(&gw.url("/x?token=garbage"), &[("x-access-token", &token)]).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn missing_expired_tampered_and_alg_none_tokens_are_refused() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let c = claims(&token);

    let a = get(&gw.url("/x"), &[]).await;
    assert_error(
        &a,
        401,
        "Authentication Required",
        "Authentication Required",
    );

    let mut expired = c.clone();
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let a = get(
        &gw.url("/x"),
        &[("x-access-token", &sign(&expired, SECRET))],
    )
    .await;
    assert_error(&a, 401, "Token expired", "jwt expired");

    // Payload changed to claim a super account, signature kept.
    let mut forged = c.clone();
    forged["accountType"] = json!("super");
    let forged_payload = claims_b64(&forged);
    let parts: Vec<&str> = token.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let a = get(&gw.url("/x"), &[("x-access-token", &tampered)]).await;
    assert_error(&a, 401, "Invalid token", "invalid signature");

    // Signed with another key.
    let a = get(
        &gw.url("/x"),
        &[(
            "x-access-token",
            &sign(&c, "some-other-secret-some-other-secret-00"),
        )],
    )
    .await;
    assert_error(&a, 401, "Invalid token", "invalid signature");

    // alg: none, with and without a trailing dot.
    let none_header = claims_b64(&json!({"alg": "none", "typ": "JWT"}));
    for t in [
        format!("{none_header}.{}.", claims_b64(&c)),
        format!("{none_header}.{}", claims_b64(&c)),
    ] {
        let a = get(&gw.url("/x"), &[("x-access-token", &t)]).await;
        assert_eq!(a.status, 401, "{}", a.text);
        assert_eq!(a.json["error"], "Invalid token");
    }

    // HS512 with the right secret: the algorithm is pinned.
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let a = get(&gw.url("/x"), &[("x-access-token", &hs512)]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json["error"], "Invalid token");

    // Not a JWT at all.
    for junk in ["abc", "a.b.c", "....", "Bearer", &"A".repeat(4000)] {
        let a = get(&gw.url("/x"), &[("x-access-token", junk)]).await;
        assert_error(&a, 401, "Invalid token", "jwt malformed");
    }

    // A validly signed token for a session that never existed.
    let mut ghost = c.clone();
    ghost["sessionId"] = json!("no-such-session");
    let a = get(&gw.url("/x"), &[("x-access-token", &sign(&ghost, SECRET))]).await;
    assert_error(&a, 401, "Session expired", "session expired");

    assert_eq!(up.count(), 0, "no refused request reached the upstream");
}

fn claims_b64(v: &serde_json::Value) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        serde_json::to_vec(v).unwrap(),
    )
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_on_every_route() {
    let up = Upstream::start();
    let routes = "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
                  [[routes]]\nprefix = \"/public\"\nupstream = \"app\"\nauth = \"none\"\n\
                  [[routes]]\nprefix = \"/maybe\"\nupstream = \"app\"\nauth = \"optional\"\n";
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(routes.into()),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    let spoof = [
        ("X-User-Id", "attacker"),
        ("x-user-email", "root@evil"),
        ("X-ACCOUNT-TYPE", "super"),
        ("x-Session-Id", "s"),
        ("X-Customer-Id", "cus_evil"),
    ];
    for path in ["/public/a", "/maybe/a"] {
        let a = get(&gw.url(path), &spoof).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        let seen = up.last();
        for (h, _) in spoof {
            assert!(seen.header(h).is_none(), "{path}: {h} reached the upstream");
        }
    }
    for path in ["/private", "/maybe/b"] {
        let mut headers = spoof.to_vec();
        headers.push(("x-access-token", &token));
        let a = get(&gw.url(path), &headers).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        let seen = up.last();
        assert_identity(&seen, &token);
        for (h, _) in spoof {
            assert_eq!(seen.header_count(h), 1, "{path}: {h} duplicated");
        }
    }
}

#[tokio::test]
async fn body_token_only_for_bounded_json() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            server_section: "max_body_bytes = 1024\n".into(),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;

    // Not JSON: the body is not searched.
    let r = client()
        .post(gw.url("/x"))
        .header("content-type", "text/plain")
        .body(format!("{{\"token\":\"{token}\"}}"))
        .send()
        .await
        .unwrap();
    assert_error(
        &read(r).await,
        401,
        "Authentication Required",
        "Authentication Required",
    );

    // Too large to search: refused, not forwarded.
    let big = json!({"token": token, "pad": "x".repeat(2000)});
    let r = client().post(gw.url("/x")).json(&big).send().await.unwrap();
    assert_eq!(read(r).await.status, 401);

    // With a header token, a large body of any kind streams through untouched.
    let big_body = "y".repeat(300_000);
    let r = client()
        .post(gw.url("/upload"))
        .header("x-access-token", &token)
        .body(big_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.status, 200);
    assert_eq!(up.last().body.len(), big_body.len());
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn every_spelling_of_the_token_parameter_is_the_token() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(
                "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
                 [[routes]]\nprefix = \"/maybe\"\nupstream = \"app\"\nauth = \"optional\"\n"
                    .into(),
            ),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    for query in [
        format!("%74oken={token}"),
        format!("a=1;token={token}"),
        format!("a=1&%74%6Fken={token}"),
    ] {
        let a = get(&gw.url(&format!("/x?{query}")), &[]).await;
        assert_eq!(a.status, 200, "{query}: {}", a.text);
        assert_identity(&up.last(), &token);
    }
    // A revoked token in any spelling is refused even where a token is optional: the backend
    // would read it as the token.
    let revoked = signin(&gw).await;
    let r = client()
        .post(gw.url("/api/auth/signout"))
        .header("x-access-token", &revoked)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = up.count();
    for query in [format!("%74oken={revoked}"), format!("a=1;token={revoked}")] {
        let a = get(&gw.url(&format!("/maybe/x?{query}")), &[]).await;
        assert_error(&a, 401, "Session expired", "session expired");
    }
    // Two tokens in one place: the gateway cannot know which one a backend would read.
    for (path, headers) in [
        (format!("/maybe/x?token={token}&token={revoked}"), vec![]),
        (
            "/maybe/x".to_string(),
            vec![
                ("x-access-token", token.as_str()),
                ("x-access-token", revoked.as_str()),
            ],
        ),
    ] {
        let mut req = client().get(gw.url(&path));
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let a = read(req.send().await.unwrap()).await;
        assert_error(&a, 401, "Invalid token", "jwt malformed");
    }
    let r = client()
        .post(gw.url("/maybe/x"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"token":"{token}","token":"{revoked}"}}"#))
        .send()
        .await
        .unwrap();
    assert_error(&read(r).await, 401, "Invalid token", "jwt malformed");
    assert_eq!(up.count(), before, "nothing refused reached the upstream");
}

#[tokio::test]
async fn no_log_line_carries_a_token() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(
                "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n".into(),
            ),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    let signature = token.rsplit('.').next().unwrap().to_string();
    for target in [
        format!("/x?token={token}"),
        format!("/x?token[]={token}"),
        format!("/x?a=1;token={token}"),
        format!("/x?x=token={token}"),
        format!("/x?%74oken={token}"),
        format!("/x?q={}", token.replace('.', "%2E")),
        format!("/files/{token}/x"),
    ] {
        let a = raw_get(gw.addr, &target, "").await;
        assert_eq!(a.status, 200, "{target}: {}", a.body);
    }
    // Each request has its access-log line by now (written before the answer completes), but
    // give the writer a moment under load.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while gw.log().matches("REDACTED").count() < 7 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let log = gw.log();
    assert!(log.matches("REDACTED").count() >= 7, "{log}");
    assert!(!log.contains(&signature), "a token reached the log:\n{log}");
}

fn chunked_post(path: &str, body: &str, extra: &str) -> String {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n{extra}Connection: close\r\n\r\n"
    );
    for chunk in body.as_bytes().chunks(7) {
        req.push_str(&format!(
            "{:x}\r\n{}\r\n",
            chunk.len(),
            String::from_utf8_lossy(chunk)
        ));
    }
    req.push_str("0\r\n\r\n");
    req
}

#[tokio::test]
async fn a_chunked_json_body_is_searched_too() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            server_section: "max_body_bytes = 1024\n".into(),
            routes: Some(
                "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
                 [[routes]]\nprefix = \"/maybe\"\nupstream = \"app\"\nauth = \"optional\"\n"
                    .into(),
            ),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    let body = format!(r#"{{"token":"{token}","x":1}}"#);
    let a = raw_request(gw.addr, chunked_post("/api/x", &body, "").as_bytes()).await;
    assert_eq!(a.status, 200, "{} {}", a.head, a.body);
    assert_identity(&up.last(), &token);
    assert_eq!(up.last().body, body.as_bytes(), "forwarded byte for byte");

    // A revoked token in a chunked body is refused where a token is optional.
    let r = client()
        .post(gw.url("/api/auth/signout"))
        .header("x-access-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = up.count();
    let a = raw_request(gw.addr, chunked_post("/maybe/x", &body, "").as_bytes()).await;
    assert_eq!(a.status, 401, "{} {}", a.head, a.body);
    assert_eq!(a.json["error"], "Session expired");

    // Too large to search where a token is optional: refused, not forwarded unsearched.
    let big = json!({"token": token, "pad": "x".repeat(2000)}).to_string();
    let a = raw_request(gw.addr, chunked_post("/maybe/x", &big, "").as_bytes()).await;
    assert_eq!(a.status, 413, "{} {}", a.head, a.body);
    let r = client()
        .post(gw.url("/maybe/x"))
        .json(&serde_json::from_str::<serde_json::Value>(&big).unwrap())
        .send()
        .await
        .unwrap();
    let a = read(r).await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert_eq!(a.json["error"], "Payload Too Large");
    assert_eq!(up.count(), before, "nothing refused reached the upstream");

    // Anonymous bodies that cannot hold a token still pass where a token is optional.
    let r = client()
        .post(gw.url("/maybe/upload"))
        .body("z".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
