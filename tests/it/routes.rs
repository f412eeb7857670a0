//! Operators map path prefixes to upstreams and choose who may use each route.

use crate::common::*;

const ROUTES: &str = "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
    [[routes]]\nprefix = \"/admin\"\nupstream = \"app\"\naccount_types = [\"admin\", \"super\"]\n\
    [[routes]]\nprefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n\
    [[routes]]\nprefix = \"/maybe\"\nupstream = \"app\"\nauth = \"optional\"\n";

async fn get(url: String, token: Option<&str>) -> Answer {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.header("x-access-token", t);
    }
    read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn account_types_restrict_a_route() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(ROUTES.into()),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;
    let a = get(gw.url("/admin/users"), Some(&token)).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.json["error"], "Forbidden");
    assert!(a.json["message"].is_string());
    assert_eq!(up.count(), 0);
    // "/administrator" is not under "/admin": segment-wise prefix matching.
    assert_eq!(
        get(gw.url("/administrator"), Some(&token)).await.status,
        200
    );
    assert_eq!(get(gw.url("/admin/users"), None).await.status, 401);
}

#[tokio::test]
async fn optional_and_open_routes() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(ROUTES.into()),
            ..Options::default()
        },
    );
    let token = signin(&gw).await;

    let a = get(gw.url("/maybe/x"), None).await;
    assert_eq!(a.status, 200);
    assert!(
        up.last().header("x-user-id").is_none(),
        "anonymous on an optional route"
    );
    let a = get(gw.url("/maybe/x"), Some(&token)).await;
    assert_eq!(a.status, 200);
    assert_eq!(up.last().header("x-user-id").as_deref(), Some(USER_ID));
    // A token that is present must be valid, even where one is optional.
    let a = get(gw.url("/maybe/x"), Some("garbage")).await;
    assert_error(&a, 401, "Invalid token", "jwt malformed");

    // auth = "none": tokens are not looked at, identity is never added.
    let a = get(gw.url("/open/x"), Some("garbage")).await;
    assert_eq!(a.status, 200);
    let a = get(gw.url("/open/x"), Some(&token)).await;
    assert_eq!(a.status, 200);
    assert!(up.last().header("x-user-id").is_none());
}

#[tokio::test]
async fn requests_keep_their_method_path_query_and_headers() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let r = client()
        .delete(gw.url("/api/cases/42?force=true&x=%20y"))
        .header("x-access-token", &token)
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.last();
    assert_eq!(seen.method, "DELETE");
    assert_eq!(seen.uri, "/api/cases/42?force=true&x=%20y");
    assert_eq!(seen.header("x-custom").as_deref(), Some("kept"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn hop_by_hop_fields_stay_on_this_hop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let token = signin(&gw).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /api/hop HTTP/1.1\r\nHost: app\r\nx-access-token: {token}\r\nX-Custom: kept\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eDp5\r\n\
         X-Nominated: 1\r\nConnection: X-Nominated, close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.last();
    for name in [
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-nominated",
        "connection",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(seen.header("x-custom").as_deref(), Some("kept"));
    assert!(seen.header("x-user-id").is_some());
}

#[tokio::test]
async fn a_server_failing_its_health_check_gets_no_requests() {
    let up = Upstream::start();
    // A port nothing listens on: the second server of the pair is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let routes = format!(
        "[[upstreams]]\nname = \"pair\"\nservers = [\"{}\", \"{dead_addr}\"]\n\
         health_check_secs = 1\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"pair\"\nauth = \"none\"\n",
        up.addr
    );
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(routes),
            ..Options::default()
        },
    );
    // Until the first check has run, the dead server may still be chosen (502).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut ok = true;
        for _ in 0..4 {
            ok &= get(gw.url("/x"), None).await.status == 200;
        }
        if ok {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dead server kept getting requests"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let before = up.count();
    for _ in 0..10 {
        let a = get(gw.url("/x"), None).await;
        assert_eq!(a.status, 200, "{}", a.text);
    }
    assert_eq!(up.count(), before + 10);
}

#[tokio::test]
async fn an_upstream_down_at_start_serves_as_soon_as_it_is_up() {
    let up = Upstream::start();
    let port = free_port();
    // One server, checked only once a minute: the first check, at start, finds it down.
    let routes = format!(
        "[[upstreams]]\nname = \"late\"\nservers = [\"127.0.0.1:{port}\"]\n\
         health_check_secs = 60\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"late\"\nauth = \"none\"\n"
    );
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(routes),
            ..Options::default()
        },
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gw.log().contains("becomes unhealthy") {
        assert!(
            std::time::Instant::now() < deadline,
            "the health check never ran:\n{}",
            gw.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let a = get(gw.url("/x"), None).await;
    assert_error(
        &a,
        502,
        "Bad Gateway",
        "The upstream service is unavailable",
    );

    // Up now, long before the next health check: served at once.
    let late = Upstream::start_on(port);
    let a = get(gw.url("/x"), None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(late.count(), 1);
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_is_a_json_504() {
    let up = Upstream::start();
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let routes = format!(
        "[[upstreams]]\nname = \"silent\"\nservers = [\"{}\"]\n\
         [[routes]]\nprefix = \"/\"\nupstream = \"silent\"\nauth = \"none\"\n",
        silent.local_addr().unwrap()
    );
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(routes),
            server_section: "upstream_read_timeout_ms = 300\n".into(),
            ..Options::default()
        },
    );
    let a = get(gw.url("/x"), None).await;
    assert_error(
        &a,
        504,
        "Gateway Timeout",
        "The upstream service did not answer in time",
    );
    drop(silent);
}

#[tokio::test]
async fn admin_listener_answers_healthz() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let a = read(
        client()
            .get(format!("http://{}/healthz", gw.admin))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json["status"], "ok");
    // The admin paths are not on the public port.
    assert_eq!(get(gw.url("/healthz"), None).await.status, 401);
}

#[tokio::test]
async fn routes_can_be_closed_to_self_registered_organizations() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(format!(
                "{ROUTES}[[routes]]\nprefix = \"/billing\"\nupstream = \"app\"\n\
                 account_types = [\"admin\", \"super\"]\norg_tiers = [\"professional\", \"enterprise\"]\n\
                 [[routes]]\nprefix = \"/doe\"\nupstream = \"app\"\norg_ids = [\"{ORG_ID}\"]\n"
            )),
            ..Options::default()
        },
    );
    // Anyone may register, and becomes the admin of a new organization on the trial tier.
    let a = post_json(
        &gw.url("/api/auth/register"),
        serde_json::json!({"email": "mallory@example.org", "password": "a long enough password",
                           "firstName": "M", "lastName": "X"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let registered = a.json["token"].as_str().unwrap().to_string();
    assert_eq!(claims(&registered)["accountType"], "admin");
    let a = get(gw.url("/admin/x"), Some(&registered)).await;
    assert_eq!(
        a.status, 200,
        "account_types alone admits a self-registered admin"
    );
    let before = up.count();
    let a = get(gw.url("/billing/x"), Some(&registered)).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(a.json["error"], "Forbidden");
    let a = get(gw.url("/doe/x"), Some(&registered)).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert_eq!(up.count(), before);

    // The seed user belongs to the listed organization, on the professional tier.
    let token = signin(&gw).await;
    assert_eq!(get(gw.url("/doe/x"), Some(&token)).await.status, 200);
    assert_eq!(
        get(gw.url("/billing/x"), Some(&token)).await.status,
        403,
        "a user is not an admin"
    );
}

#[tokio::test]
async fn the_admin_listener_serves_the_openapi_document() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    let a = admin_get(&gw, "/openapi.json").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    assert!(a.json["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, method) in [
        ("/api/auth/signin", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/register", "post"),
        ("/api/auth/me", "get"),
        ("/api/auth/change-password", "post"),
        ("/api/auth/mfa/verify", "post"),
        ("/api/user/refresh/profile", "post"),
        ("/api/auth/signout", "post"),
        ("/api/auth/signout-all", "post"),
    ] {
        let op = &a.json["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not described");
        assert!(op["responses"]["200"].is_object(), "{method} {path}");
    }
    // Not on the public port.
    let public = read(client().get(gw.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(public.status, 401);
}
