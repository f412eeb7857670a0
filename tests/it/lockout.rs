//! Guessing one account's password from many addresses gets nowhere: failures are counted per
//! account (for unknown emails too, so the limit reveals nothing), the account is locked for the
//! rest of the window from every address, and the owner's trusted device still gets in.

use crate::common::*;
use serde_json::{Value, json};

/// Trusted proxy on loopback, so each request can come "from" an address of its own, and a
/// per-address limit high enough to stay out of the way.
fn options() -> Options {
    Options {
        server_section: "trusted_proxies = [\"127.0.0.1/32\"]\n".into(),
        rate_limit_section:
            "[rate_limit]\nauth_per_minute = 1000\naccount_failures = 5\naccount_window_secs = 300\n"
                .into(),
        ..Options::default()
    }
}

async fn signin_as(gw: &Gateway, from: &str, body: Value) -> Answer {
    read(
        client()
            .post(gw.url("/api/auth/signin"))
            .header("x-forwarded-for", from)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn locked(a: &Answer) {
    assert_eq!(a.status, 429, "{}", a.text);
    assert_eq!(a.json["error"], "Too Many Requests");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((250..=300).contains(&retry), "Retry-After {retry}");
}

/// Five wrong passwords from five addresses; the sixth attempt, from yet another, is refused.
async fn guess_five_times(gw: &Gateway, email: &str, first_octet: u8) {
    for i in 0..5 {
        let a = signin_as(
            gw,
            &format!("{first_octet}.0.113.{i}"),
            json!({"email": email, "password": format!("guess-{i}")}),
        )
        .await;
        assert_error(
            &a,
            401,
            "Invalid email or password",
            "Invalid email or password",
        );
    }
}

#[tokio::test]
async fn a_distributed_guess_locks_the_account_and_reveals_nothing() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options());
    guess_five_times(&gw, EMAIL, 198).await;
    // From a new address, with a wrong password, then with the right one: refused alike.
    locked(
        &signin_as(
            &gw,
            "203.0.113.50",
            json!({"email": EMAIL, "password": "guess-6"}),
        )
        .await,
    );
    locked(
        &signin_as(
            &gw,
            "203.0.113.51",
            json!({"email": EMAIL, "password": PASSWORD}),
        )
        .await,
    );
    // The limit holds for login, and for any spelling of the email.
    let a = read(
        client()
            .post(gw.url("/api/auth/login"))
            .header("x-forwarded-for", "203.0.113.52")
            .json(&json!({"email": " JOHN.doe@mydomain.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    locked(&a);

    // An email nobody has behaves exactly the same.
    guess_five_times(&gw, "ghost@mydomain.com", 192).await;
    let ghost = signin_as(
        &gw,
        "203.0.113.60",
        json!({"email": "ghost@mydomain.com", "password": "x"}),
    )
    .await;
    locked(&ghost);

    // Other accounts are not affected.
    let other = signin_as(
        &gw,
        "198.0.113.1",
        json!({"email": "someone@mydomain.com", "password": "x"}),
    )
    .await;
    assert_eq!(other.status, 401);
    assert!(
        !gw.log().contains(EMAIL) || !gw.log().contains("ghost@"),
        "emails tried are not logged"
    );
}

#[tokio::test]
async fn a_success_resets_the_count() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options());
    for round in 0..3 {
        for i in 0..4 {
            let a = signin_as(
                &gw,
                &format!("198.51.{round}.{i}"),
                json!({"email": EMAIL, "password": "wrong"}),
            )
            .await;
            assert_eq!(a.status, 401, "round {round}, try {i}: {}", a.text);
        }
        let a = signin_as(
            &gw,
            "198.51.100.1",
            json!({"email": EMAIL, "password": PASSWORD}),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
}

#[tokio::test]
async fn one_address_can_be_locked_out_of_an_account_first() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: "[rate_limit]\nauth_per_minute = 1000\naccount_failures = 5\n\
                                 account_client_failures = 2\n"
                .into(),
            ..options()
        },
    );
    for _ in 0..2 {
        let a = signin_as(
            &gw,
            "198.51.100.9",
            json!({"email": EMAIL, "password": "x"}),
        )
        .await;
        assert_eq!(a.status, 401);
    }
    locked(
        &signin_as(
            &gw,
            "198.51.100.9",
            json!({"email": EMAIL, "password": PASSWORD}),
        )
        .await,
    );
    // The owner, elsewhere, is not.
    let a = signin_as(
        &gw,
        "203.0.113.7",
        json!({"email": EMAIL, "password": PASSWORD}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
}

#[tokio::test]
async fn the_count_is_shared_through_redis() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let opts = || Options {
        store_section: Some(redis_store(&format!("\"{}\"", redis.url()), "")),
        ..options()
    };
    let a = Gateway::start(&up, opts());
    let b = Gateway::start(&up, opts());
    for (i, gw) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let r = signin_as(
            gw,
            &format!("198.51.100.{i}"),
            json!({"email": EMAIL, "password": "x"}),
        )
        .await;
        assert_eq!(r.status, 401, "{}", r.text);
    }
    let keys: Vec<String> = redis.query(&["KEYS", "ag:af:*"]);
    let account_key = keys
        .iter()
        .find(|k| k.ends_with('}'))
        .unwrap_or_else(|| panic!("no account key in {keys:?}"));
    assert_eq!(redis.query::<String>(&["GET", account_key]), "5");
    let ttl: i64 = redis.query(&["TTL", account_key]);
    assert!((250..=300).contains(&ttl), "TTL {ttl}");
    assert!(
        !account_key.contains("mydomain"),
        "emails are not kept in clear: {account_key}"
    );
    locked(
        &signin_as(
            &b,
            "203.0.113.9",
            json!({"email": EMAIL, "password": PASSWORD}),
        )
        .await,
    );
    locked(
        &signin_as(
            &a,
            "203.0.113.9",
            json!({"email": EMAIL, "password": PASSWORD}),
        )
        .await,
    );
}

/// 30 guesses sent at once, from 30 addresses, split over the given instances.
async fn burst(gateways: &[&Gateway]) -> Vec<u16> {
    let mut tasks = Vec::new();
    for i in 0..30 {
        let gw = gateways[i % gateways.len()];
        let (url, from) = (gw.url("/api/auth/signin"), format!("198.18.0.{i}"));
        tasks.push(tokio::spawn(async move {
            client()
                .post(url)
                .header("x-forwarded-for", from)
                .json(&json!({"email": EMAIL, "password": format!("guess-{i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn guesses_sent_all_at_once_are_counted_before_they_are_checked() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options());
    let statuses = burst(&[&gw]).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        25,
        "{statuses:?}"
    );
    locked(
        &signin_as(
            &gw,
            "203.0.113.9",
            json!({"email": EMAIL, "password": PASSWORD}),
        )
        .await,
    );
}

#[tokio::test]
async fn guesses_sent_all_at_once_to_two_instances_share_one_count() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let opts = || Options {
        store_section: Some(redis_store(&format!("\"{}\"", redis.url()), "")),
        ..options()
    };
    let a = Gateway::start(&up, opts());
    let b = Gateway::start(&up, opts());
    let statuses = burst(&[&a, &b]).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        25,
        "{statuses:?}"
    );
}
