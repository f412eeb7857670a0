//! Several gateway instances behind a load balancer share one Redis: a user signs in on one and
//! is known on all, a signout anywhere ends the session everywhere, the credential limit holds
//! across instances, and a Redis outage is answered with 503 until Redis is back.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::json;

fn redis_opts(url_toml: &str, extra: &str) -> Options {
    Options {
        store_section: Some(redis_store(url_toml, extra)),
        ..Options::default()
    }
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

async fn signout(gw: &Gateway, token: &str) -> Answer {
    read(
        client()
            .post(gw.url("/api/auth/signout"))
            .header("x-access-token", token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Poll until `gw` refuses `token` with 401 Session expired; returns how long that took.
async fn refused_within(gw: &Gateway, token: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let a = get(gw, token).await;
        if a.status == 401 {
            assert_error(&a, 401, "Session expired", "session expired");
            return start.elapsed();
        }
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(
            start.elapsed() < limit,
            "still accepted after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sign_in_on_one_instance_use_and_revoke_on_another() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let a = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let b = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));

    // What the import put in Redis.
    assert_eq!(
        redis.query::<String>(&["GET", &format!("ag:{{users}}:email:{EMAIL}")]),
        USER_ID
    );
    let user: serde_json::Value = serde_json::from_str(
        &redis.query::<String>(&["GET", &format!("ag:{{users}}:user:{USER_ID}")]),
    )
    .unwrap();
    assert_eq!(user["email"], EMAIL);

    let token = signin(&a).await;
    let sid = claims(&token)["sessionId"].as_str().unwrap().to_string();
    let key = format!("ag:{{u:{USER_ID}}}:s:{sid}");
    assert_eq!(
        redis.query::<i64>(&["EXISTS", &key]),
        1,
        "the session lives in Redis"
    );
    let ttl: i64 = redis.query(&["TTL", &key]);
    assert!(
        (21_590..=21_600).contains(&ttl),
        "session TTL follows the token lifetime: {ttl}"
    );

    // Used on both, so both have it cached.
    for gw in [&a, &b] {
        let r = get(gw, &token).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            up.last().header("x-session-id").as_deref(),
            Some(sid.as_str())
        );
    }
    assert_eq!(signout(&b, &token).await.status, 200);
    assert_eq!(
        redis.query::<i64>(&["EXISTS", &key]),
        0,
        "signout deletes the session"
    );
    let took = refused_within(&a, &token, Duration::from_secs(1)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(get(&b, &token).await.status, 401);
}

#[tokio::test]
async fn the_credential_limit_is_shared_by_all_instances() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let a = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let b = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    // An email of its own each time: failures on one account are limited on their own.
    let body = |i: usize| json!({"email": format!("nobody{i}@mydomain.com"), "password": "wrong"});
    for i in 0..6 {
        assert_eq!(
            post_json(&a.url("/api/auth/signin"), body(i)).await.status,
            401
        );
    }
    for i in 6..10 {
        assert_eq!(
            post_json(&b.url("/api/auth/signin"), body(i)).await.status,
            401
        );
    }
    let last = body(10);
    let eleventh = post_json(&b.url("/api/auth/signin"), last.clone()).await;
    assert_eq!(eleventh.status, 429, "{}", eleventh.text);
    assert!(eleventh.headers.contains_key("retry-after"));
    assert_eq!(
        post_json(&a.url("/api/auth/signin"), last).await.status,
        429
    );
    let keys: Vec<String> = redis.query(&["KEYS", "ag:rl:*"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = redis.query(&["PTTL", &keys[0]]);
    assert!(
        ttl > 0 && ttl <= 66_000,
        "limit state expires by itself: {ttl}"
    );
}

#[tokio::test]
async fn concurrent_signins_on_two_instances_never_exceed_the_limit() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let a = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let b = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let url = if i % 2 == 0 {
            a.url("/api/auth/signin")
        } else {
            b.url("/api/auth/signin")
        };
        // An email of its own each time: failures on one account are limited on their own.
        let body = json!({"email": format!("nobody{i}@mydomain.com"), "password": "wrong"});
        tasks.push(tokio::spawn(
            async move { post_json(&url, body).await.status },
        ));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let passed = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(passed, 10, "{statuses:?}");
    assert_eq!(limited, 2, "{statuses:?}");
}

#[tokio::test]
async fn redis_outage_gives_503_then_recovers_without_restart() {
    let mut redis = RedisServer::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let token = signin(&gw).await;
    assert_eq!(get(&gw, &token).await.status, 200, "warm the cache");
    // Ready once its own Redis check answers (each check has the Redis deadline, which a
    // busy machine may miss now and then): wait for it, with a deadline of our own.
    let start = Instant::now();
    let ready = loop {
        let ready = admin_get(&gw, "/readyz").await;
        if ready.status == 200 || start.elapsed() > Duration::from_secs(10) {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.json["store"], "redis");

    redis.kill();
    // What the gateway promises: once it has noticed that Redis is gone (its listener pings
    // every second), every request that needs a session check gets 503. A request in the
    // moment before may still be answered from the session cache, which held a live session.
    let start = Instant::now();
    let a = loop {
        let a = get(&gw, &token).await;
        if a.status != 200 {
            break a;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "Redis died {:?} ago and requests still pass",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let before = up.count();
    assert_eq!(a.status, 503, "{}", a.text);
    assert_eq!(a.json["error"], "Service Unavailable");
    assert!(a.json["message"].is_string());
    let ready = read(
        client()
            .get(format!("http://{}/readyz", gw.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert_eq!(ready.json["storeStatus"], "down");

    // Signin cannot check the password, but is still rate limited, by this instance alone
    // (which counted the first signin too).
    let body = json!({"email": EMAIL, "password": "wrong"});
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(
            post_json(&gw.url("/api/auth/signin"), body.clone())
                .await
                .status,
        );
    }
    assert!(statuses[..9].iter().all(|s| *s == 503), "{statuses:?}");
    assert!(
        statuses[9..].iter().all(|s| *s == 429),
        "never unlimited while Redis is down: {statuses:?}"
    );
    for _ in 0..5 {
        let a = get(&gw, &token).await;
        assert_eq!(a.status, 503, "{}", a.text);
    }
    assert_eq!(
        up.count(),
        before,
        "nothing was forwarded while sessions could not be checked"
    );

    redis.restart();
    let start = Instant::now();
    loop {
        let a = get(&gw, &token).await;
        if a.status == 200 {
            break;
        }
        assert_eq!(a.status, 503, "{}", a.text);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "not recovered after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = Instant::now();
    while admin_get(&gw, "/readyz").await.status != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not ready again after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

#[tokio::test]
async fn slow_redis_is_a_503_after_the_timeout() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        redis_opts(
            &format!("\"{}\"", redis.url()),
            "redis_timeout_ms = 200\nsession_cache_secs = 0\n",
        ),
    );
    let token = signin(&gw).await;
    // Block the server for two seconds.
    let url = redis.url();
    let blocker = std::thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: redis::RedisResult<()> = redis::cmd("DEBUG").arg("SLEEP").arg("2").query(&mut conn);
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let a = get(&gw, &token).await;
    assert_eq!(a.status, 503, "{}", a.text);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "answered in {:?}",
        start.elapsed()
    );
    blocker.join().unwrap();
    let start = Instant::now();
    while get(&gw, &token).await.status != 200 {
        assert!(start.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn keys_expire_with_the_token_and_refresh_extends_them() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let opts = Options {
        token_section: format!("[token]\nsecret = \"{SECRET}\"\nvalidity_secs = 4\n"),
        ..redis_opts(&format!("\"{}\"", redis.url()), "")
    };
    let gw = Gateway::start(&up, opts);
    let token = signin(&gw).await;
    let sid = claims(&token)["sessionId"].as_str().unwrap().to_string();
    let key = format!("ag:{{u:{USER_ID}}}:s:{sid}");
    let index = format!("ag:{{u:{USER_ID}}}:sessions");
    assert!((1..=4).contains(&redis.query::<i64>(&["TTL", &key])));
    assert!((1..=4).contains(&redis.query::<i64>(&["TTL", &index])));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = read(
        client()
            .post(gw.url("/api/user/refresh/profile"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pttl: i64 = redis.query(&["PTTL", &key]);
    assert!(
        pttl > 2600,
        "refresh gave the key a full lifetime again: {pttl}ms"
    );
    let fresh = r.json["token"].as_str().unwrap().to_string();

    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(
        redis.query::<i64>(&["EXISTS", &key]),
        0,
        "the session key expired"
    );
    assert_eq!(
        redis.query::<i64>(&["EXISTS", &index]),
        0,
        "the session index expired"
    );
    let a = get(&gw, &fresh).await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn users_import_replaces_records_and_drops_stale_emails() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let gw = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let token = signin(&gw).await;
    assert_eq!(get(&gw, &token).await.status, 200);

    // The operator disables the organization and changes the user's email, then re-imports.
    let users = sample_users()
        .replace("status = \"active\"                        # \"active\" | \"disabled\"\nsubscription_tier", "status = \"disabled\"\nsubscription_tier")
        .replace(EMAIL, "john@newdomain.com");
    std::fs::write(gw.users_path(), users).unwrap();
    import_users(&gw.config_path);

    assert_eq!(
        redis.query::<i64>(&["EXISTS", &format!("ag:{{users}}:email:{EMAIL}")]),
        0
    );
    assert_eq!(
        redis.query::<String>(&["GET", "ag:{users}:email:john@newdomain.com"]),
        USER_ID
    );
    // Existing sessions see the change at once.
    let start = Instant::now();
    loop {
        let a = get(&gw, &token).await;
        if a.status == 401 {
            assert_error(
                &a,
                401,
                "Firm account is disabled",
                "Firm account is disabled",
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{}", a.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_redis_cluster_works_the_same() {
    let cluster = RedisCluster::start();
    let up = Upstream::start();
    let a = Gateway::start(&up, redis_opts(&cluster.urls_toml(), ""));
    let b = Gateway::start(&up, redis_opts(&cluster.urls_toml(), ""));
    let ready = read(
        client()
            .get(format!("http://{}/readyz", a.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ready.json["store"], "redis-cluster", "{}", ready.text);

    let token = signin(&a).await;
    assert_eq!(get(&b, &token).await.status, 200);
    assert_eq!(get(&a, &token).await.status, 200);
    let sid = claims(&token)["sessionId"].as_str().unwrap().to_string();
    assert_eq!(
        cluster.keys(&format!("ag:{{u:{USER_ID}}}:s:{sid}")).len(),
        1
    );

    assert_eq!(signout(&b, &token).await.status, 200);
    refused_within(&a, &token, Duration::from_secs(1)).await;

    let mut statuses = Vec::new();
    for i in 0..11 {
        let gw = if i < 6 { &a } else { &b };
        let body = json!({"email": format!("nobody{i}@mydomain.com"), "password": "wrong"});
        statuses.push(post_json(&gw.url("/api/auth/signin"), body).await.status);
    }
    // The signin above already counted: nine more pass, across both instances.
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(statuses[10], 429);
}

#[tokio::test]
async fn a_fresh_redis_is_seeded_from_the_users_file() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let opts = Options {
        skip_import: true,
        ..redis_opts(&format!("\"{}\"", redis.url()), "")
    };
    let gw = Gateway::start(&up, opts);
    let token = signin(&gw).await;
    assert_eq!(get(&gw, &token).await.status, 200);
    assert_eq!(
        redis.query::<String>(&["GET", &format!("ag:{{users}}:email:{EMAIL}")]),
        USER_ID
    );
}

#[tokio::test]
async fn instances_without_a_configured_secret_agree_on_one() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let opts = || Options {
        token_section: String::new(),
        ..redis_opts(&format!("\"{}\"", redis.url()), "")
    };
    let a = Gateway::start(&up, opts());
    let b = Gateway::start(&up, opts());
    let token = signin(&a).await;
    let answer = get(&b, &token).await;
    assert_eq!(
        answer.status,
        200,
        "a token from A is valid on B: {}\n{}",
        answer.text,
        b.log()
    );
    assert_eq!(redis.query::<i64>(&["EXISTS", "ag:secret"]), 1);
}

#[tokio::test]
async fn register_login_and_change_password_across_instances() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let a = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let b = Gateway::start(&up, redis_opts(&format!("\"{}\"", redis.url()), ""));
    let reg = post_json(
        &a.url("/api/auth/register"),
        json!({"email": "jane@example.com", "password": "correct horse battery", "firstName": "Jane", "lastName": "Roe"}),
    )
    .await;
    assert_eq!(reg.status, 200, "{}", reg.text);
    let id = reg.json["user"]["id"].as_str().unwrap().to_string();
    assert_eq!(reg.json["firm"]["name"], "Jane Roe");
    assert_eq!(
        redis.query::<String>(&["GET", "ag:{users}:email:jane@example.com"]),
        id,
        "registered straight into Redis"
    );
    let dup = post_json(
        &b.url("/api/auth/register"),
        json!({"email": "jane@example.com", "password": "correct horse battery", "firstName": "J", "lastName": "R"}),
    )
    .await;
    assert_eq!(dup.status, 409, "{}", dup.text);

    let on_b = login_jane(&b, "correct horse battery").await;
    assert_eq!(on_b.status, 200, "{}", on_b.text);
    let token_b = on_b.json["token"].as_str().unwrap().to_string();
    let me = read(
        client()
            .get(b.url("/api/auth/me"))
            .header("x-access-token", &token_b)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(me.json["user"]["id"], id.as_str());

    let token_a = reg.json["token"].as_str().unwrap().to_string();
    let changed = read(
        client()
            .post(a.url("/api/auth/change-password"))
            .header("x-access-token", &token_a)
            .json(&json!({"currentPassword": "correct horse battery", "newPassword": "an even better password"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    refused_within(&b, &token_b, Duration::from_secs(1)).await;
    assert_eq!(
        get(&a, &token_a).await.status,
        200,
        "the caller keeps its session"
    );
    assert_eq!(login_jane(&b, "correct horse battery").await.status, 401);
    assert_eq!(login_jane(&b, "an even better password").await.status, 200);
}

async fn login_jane(gw: &Gateway, password: &str) -> Answer {
    post_json(
        &gw.url("/api/auth/login"),
        json!({"email": "jane@example.com", "password": password}),
    )
    .await
}
