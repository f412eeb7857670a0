//! A client hammering the credential endpoints is slowed to 10 a minute per IP, and cannot
//! dodge the limit by inventing X-Forwarded-For headers.

use crate::common::*;
use serde_json::json;

/// A failed signin, each for an email of its own, so that only the per-address limit applies
/// (failures on one account are limited separately, see `tests/lockout.rs`).
async fn signin_from(gw: &Gateway, xff: Option<&str>) -> Answer {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut req = client()
        .post(gw.url("/api/auth/signin"))
        .json(&json!({"email": format!("nobody{n}@mydomain.com"), "password": "wrong-password"}));
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn eleventh_signin_in_a_minute_gets_429_with_retry_after() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    for i in 0..10 {
        let a = signin_from(&gw, None).await;
        assert_eq!(a.status, 401, "attempt {}: {}", i + 1, a.text);
    }
    let a = signin_from(&gw, None).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert_eq!(a.json["error"], "Too Many Requests");
    assert!(a.json["message"].is_string());
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");

    // The right password does not bypass the limit either.
    let ok = post_json(
        &gw.url("/api/auth/signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(ok.status, 429);

    // Proxied traffic is not affected by the credential limit.
    let r = client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn rotating_forwarded_for_from_an_untrusted_peer_is_ignored() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    for i in 0..10 {
        let a = signin_from(&gw, Some(&format!("198.51.100.{i}"))).await;
        assert_eq!(a.status, 401, "{}", a.text);
    }
    let a = signin_from(&gw, Some("198.51.100.200")).await;
    assert_eq!(
        a.status, 429,
        "X-Forwarded-For from an untrusted peer must not reset the limit"
    );
}

#[tokio::test]
async fn trusted_proxy_forwarded_for_separates_clients() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            server_section: "trusted_proxies = [\"127.0.0.1/32\"]\n".into(),
            ..Options::default()
        },
    );
    for _ in 0..10 {
        assert_eq!(signin_from(&gw, Some("203.0.113.1")).await.status, 401);
    }
    assert_eq!(signin_from(&gw, Some("203.0.113.1")).await.status, 429);
    // A different client behind the same proxy has its own budget.
    assert_eq!(signin_from(&gw, Some("203.0.113.2")).await.status, 401);
    // A client-written address to the left of the real one changes nothing.
    assert_eq!(
        signin_from(&gw, Some("9.9.9.9, 203.0.113.1")).await.status,
        429
    );
}

#[tokio::test]
async fn limit_is_configurable_and_per_route_limits_apply() {
    let up = Upstream::start();
    let routes = "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\nrate_limit_per_minute = 3\n";
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: "[rate_limit]\nauth_per_minute = 2\n".into(),
            routes: Some(routes.into()),
            ..Options::default()
        },
    );
    assert_eq!(signin_from(&gw, None).await.status, 401);
    assert_eq!(signin_from(&gw, None).await.status, 401);
    assert_eq!(signin_from(&gw, None).await.status, 429);
    for _ in 0..3 {
        assert_eq!(
            client().get(gw.url("/p")).send().await.unwrap().status(),
            200
        );
    }
    let a = read(client().get(gw.url("/p")).send().await.unwrap()).await;
    assert_eq!(a.status, 429);
    assert!(a.headers.contains_key("retry-after"));
    assert_eq!(up.count(), 3);
}
