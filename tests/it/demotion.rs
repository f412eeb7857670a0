//! The current user record decides who a caller is: after an operator demotes an account or
//! changes its email, existing tokens are routed and forwarded as the account is now, on every
//! instance. The token's claims are only a hint.

use std::time::{Duration, Instant};

use crate::common::*;

const ROUTES: &str = "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
    [[routes]]\nprefix = \"/admin\"\nupstream = \"app\"\naccount_types = [\"admin\"]\n";

fn as_admin(users: &str) -> String {
    users.replacen("account_type = \"user\"", "account_type = \"admin\"", 1)
}

fn demoted(users: &str) -> String {
    users
        .replacen("account_type = \"admin\"", "account_type = \"user\"", 1)
        .replace(EMAIL, "john@newdomain.com")
}

async fn get(gw: &Gateway, path: &str, token: &str) -> Answer {
    read(
        client()
            .get(gw.url(path))
            .header("x-access-token", token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Wait (with a deadline) for `/admin/x` to be refused, then check how the plain route is now
/// forwarded.
async fn sees_demotion(gw: &Gateway, up: &Upstream, token: &str) {
    let start = Instant::now();
    loop {
        let a = get(gw, "/admin/x", token).await;
        if a.status == 403 {
            assert_eq!(a.json["error"], "Forbidden");
            break;
        }
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "demotion not seen after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = up.count();
    assert_eq!(get(gw, "/admin/x", token).await.status, 403);
    assert_eq!(up.count(), before, "a refused request reached the upstream");
    assert_eq!(get(gw, "/api/x", token).await.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-account-type").as_deref(), Some("user"));
    assert_eq!(
        seen.header("x-user-email").as_deref(),
        Some("john@newdomain.com")
    );
    assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID));
}

async fn admin_token(gw: &Gateway, up: &Upstream) -> String {
    let token = signin(gw).await;
    assert_eq!(claims(&token)["accountType"], "admin");
    assert_eq!(get(gw, "/admin/x", &token).await.status, 200);
    assert_eq!(up.last().header("x-account-type").as_deref(), Some("admin"));
    token
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_routes_at_once_with_the_memory_store() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(ROUTES.into()),
            users_toml: Some(as_admin(&sample_users())),
            ..Options::default()
        },
    );
    let token = admin_token(&gw, &up).await;
    let users = std::fs::read_to_string(gw.users_path()).unwrap();
    std::fs::write(gw.users_path(), demoted(&users)).unwrap();
    gw.signal("HUP");
    sees_demotion(&gw, &up, &token).await;
    // A refreshed token carries the current record too.
    let a = read(
        client()
            .post(gw.url("/api/user/refresh/profile"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let fresh = a.json["token"].as_str().unwrap();
    assert_eq!(claims(fresh)["accountType"], "user");
    assert_eq!(claims(fresh)["email"], "john@newdomain.com");
}

#[tokio::test]
async fn a_demotion_imported_into_redis_reaches_every_instance() {
    let redis = RedisServer::start();
    let up = Upstream::start();
    let opts = || Options {
        routes: Some(ROUTES.into()),
        users_toml: Some(as_admin(&sample_users())),
        store_section: Some(redis_store(&format!("\"{}\"", redis.url()), "")),
        ..Options::default()
    };
    let a = Gateway::start(&up, opts());
    let b = Gateway::start(&up, opts());
    let token = admin_token(&a, &up).await;
    // Both instances have the admin record cached.
    assert_eq!(get(&b, "/admin/x", &token).await.status, 200);

    let users = std::fs::read_to_string(a.users_path()).unwrap();
    std::fs::write(a.users_path(), demoted(&users)).unwrap();
    import_users(&a.config_path);
    sees_demotion(&a, &up, &token).await;
    sees_demotion(&b, &up, &token).await;
}
