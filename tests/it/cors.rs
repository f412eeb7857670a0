//! A single-page app on another origin signs in and refreshes through the gateway: its browser
//! asks first (a preflight) and the gateway answers for the origins it lists; every answer to a
//! listed origin, errors included, lets the page read it, and other origins get no CORS header.
//! Proxied routes are untouched unless they opt in with `cors = true`.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use crate::common::*;
use reqwest::header::HeaderMap;
use serde_json::json;

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.com";

fn cors_options(upstream_of_shared: SocketAddr, extra_rate: &str) -> Options {
    Options {
        routes: Some(
            "[[routes]]\nprefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n\
             [[routes]]\nprefix = \"/shared\"\nupstream = \"shared\"\nauth = \"required\"\ncors = true\n\
             [[routes]]\nprefix = \"/\"\nupstream = \"app\"\nauth = \"required\"\n"
                .into(),
        ),
        extra_toml: format!(
            "[[upstreams]]\nname = \"shared\"\nservers = [\"{upstream_of_shared}\"]\n\
             [cors]\nallowed_origins = [\"{APP}\", \"http://localhost:5173\"]\n\
             allowed_headers = [\"content-type\", \"x-access-token\", \"authorization\"]\n\
             max_age_secs = 300\n"
        ),
        rate_limit_section: extra_rate.into(),
        ..Options::default()
    }
}

/// An upstream that sends its own, too generous, CORS headers.
struct GenerousUpstream {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl GenerousUpstream {
    fn start() -> GenerousUpstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(|| async {
            (
                [
                    ("content-type", "application/json"),
                    ("access-control-allow-origin", "*"),
                    ("access-control-allow-methods", "*"),
                    ("vary", "Accept-Encoding"),
                ],
                r#"{"shared":true}"#,
            )
        });
        runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(listener, app).await;
            }
        });
        GenerousUpstream {
            addr,
            runtime: Some(runtime),
        }
    }
}

impl Drop for GenerousUpstream {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn preflight(gw: &Gateway, path: &str, origin: &str, headers: &str) -> Answer {
    read(
        client()
            .request(reqwest::Method::OPTIONS, gw.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn cors_headers(h: &HeaderMap) -> Vec<String> {
    h.keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} in {h:?}"))
        .to_str()
        .unwrap()
}

/// What every answer to a listed origin carries.
fn assert_granted(h: &HeaderMap, origin: &str) {
    assert_eq!(header(h, "access-control-allow-origin"), origin);
    assert_eq!(header(h, "access-control-allow-credentials"), "true");
    assert!(
        h.get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().contains("Origin")),
        "{h:?}"
    );
    let exposed = header(h, "access-control-expose-headers");
    assert!(
        exposed.contains("Retry-After") && exposed.contains("X-Request-Id"),
        "{exposed}"
    );
}

async fn signin_from(gw: &Gateway, origin: &str, password: &str) -> Answer {
    read(
        client()
            .post(gw.url("/api/auth/signin"))
            .header("origin", origin)
            .json(&json!({"email": EMAIL, "password": password}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn preflights_are_answered_for_listed_origins_only() {
    let up = Upstream::start();
    let shared = GenerousUpstream::start();
    let gw = Gateway::start(&up, cors_options(shared.addr, ""));

    let a = preflight(
        &gw,
        "/api/auth/signin",
        APP,
        "Content-Type, X-Access-Token, X-Not-Allowed",
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.text);
    assert!(a.text.is_empty(), "no body: {}", a.text);
    let h = &a.headers;
    assert_eq!(header(h, "access-control-allow-origin"), APP);
    assert_eq!(header(h, "access-control-allow-methods"), "POST");
    assert_eq!(
        header(h, "access-control-allow-headers"),
        "content-type, x-access-token",
        "only the allowed request headers"
    );
    assert_eq!(header(h, "access-control-max-age"), "300");
    assert_eq!(header(h, "access-control-allow-credentials"), "true");
    assert_eq!(header(h, "vary"), "Origin");

    let me = preflight(
        &gw,
        "/api/auth/me",
        "http://localhost:5173",
        "x-access-token",
    )
    .await;
    assert_eq!(me.status, 204, "{}", me.text);
    assert_eq!(
        header(&me.headers, "access-control-allow-origin"),
        "http://localhost:5173"
    );
    assert_eq!(header(&me.headers, "access-control-allow-methods"), "GET");

    let foreign = preflight(&gw, "/api/auth/signin", EVIL, "content-type").await;
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    assert_eq!(foreign.json["error"], "Forbidden");
    assert!(foreign.json["message"].is_string());
    assert!(
        cors_headers(&foreign.headers).is_empty(),
        "{:?}",
        foreign.headers
    );

    // Preflights need no token and are no credential requests: more of them than the
    // credential limit allows (10 a minute), and a sign-in still passes.
    // One client, so the connection is kept alive across the bodiless answers.
    let browser = client();
    for _ in 0..12 {
        let a = browser
            .request(reqwest::Method::OPTIONS, gw.url("/api/auth/signin"))
            .header("origin", APP)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), 204);
        assert!(a.headers().get("access-control-allow-headers").is_none());
    }
    let signin = read(
        browser
            .post(gw.url("/api/auth/signin"))
            .header("origin", APP)
            .json(&json!({"email": EMAIL, "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(signin.status, 200, "{}", signin.text);
    assert_granted(&signin.headers, APP);
    assert_eq!(up.count(), 0, "nothing was forwarded");
}

#[tokio::test]
async fn answers_to_listed_origins_can_be_read_by_the_page_errors_too() {
    let up = Upstream::start();
    let shared = GenerousUpstream::start();
    let gw = Gateway::start(
        &up,
        cors_options(shared.addr, "[rate_limit]\nauth_per_minute = 3\n"),
    );

    let ok = signin_from(&gw, APP, PASSWORD).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_granted(&ok.headers, APP);
    let token = ok.json["token"].as_str().unwrap().to_string();

    let foreign = signin_from(&gw, EVIL, PASSWORD).await;
    assert_eq!(foreign.status, 200, "handled as today: {}", foreign.text);
    assert!(
        cors_headers(&foreign.headers).is_empty(),
        "{:?}",
        foreign.headers
    );

    let wrong = signin_from(&gw, APP, "wrong password").await;
    assert_error(
        &wrong,
        401,
        "Invalid email or password",
        "Invalid email or password",
    );
    assert_granted(&wrong.headers, APP);

    let limited = signin_from(&gw, APP, PASSWORD).await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert!(limited.headers.contains_key("retry-after"));
    assert_granted(&limited.headers, APP);

    // An endpoint that needs a token: refused without one, answered with it.
    let me = |token: Option<&str>| {
        let mut req = client().get(gw.url("/api/auth/me")).header("origin", APP);
        if let Some(token) = token {
            req = req.header("x-access-token", token);
        }
        req.send()
    };
    let refused = read(me(None).await.unwrap()).await;
    assert_error(
        &refused,
        401,
        "Authentication Required",
        "Authentication Required",
    );
    assert_granted(&refused.headers, APP);
    let answered = read(me(Some(&token)).await.unwrap()).await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    assert_granted(&answered.headers, APP);

    // Without Origin, as today: no CORS header.
    let plain = read(
        client()
            .get(gw.url("/api/auth/me"))
            .header("x-access-token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(plain.status, 200);
    assert!(cors_headers(&plain.headers).is_empty());
}

#[tokio::test]
async fn routes_are_untouched_unless_they_opt_in() {
    let up = Upstream::start();
    let shared = GenerousUpstream::start();
    let gw = Gateway::start(&up, cors_options(shared.addr, ""));
    let token = signin(&gw).await;

    // No `cors`: the preflight goes to the upstream like any request, and its answer is the
    // upstream's.
    let a = preflight(&gw, "/open/items", APP, "content-type").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json["upstream"], true);
    let seen = up.last();
    assert_eq!(seen.method, "OPTIONS");
    assert_eq!(seen.uri, "/open/items");
    assert_eq!(seen.header("origin").as_deref(), Some(APP));
    assert!(cors_headers(&a.headers).is_empty(), "{:?}", a.headers);
    let get = read(
        client()
            .get(gw.url("/open/items"))
            .header("origin", APP)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(get.status, 200);
    assert!(cors_headers(&get.headers).is_empty(), "{:?}", get.headers);

    // `cors = true`: the gateway answers the preflight (no token needed) ...
    let before = up.count();
    let pre = preflight(&gw, "/shared/items", APP, "x-access-token").await;
    assert_eq!(pre.status, 204, "{}", pre.text);
    assert_eq!(header(&pre.headers, "access-control-allow-origin"), APP);
    let methods = header(&pre.headers, "access-control-allow-methods");
    assert!(
        ["GET", "POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .all(|m| methods.contains(m)),
        "{methods}"
    );
    assert_eq!(
        header(&pre.headers, "access-control-allow-headers"),
        "x-access-token"
    );
    assert_eq!(up.count(), before);
    let foreign_pre = preflight(&gw, "/shared/items", EVIL, "x-access-token").await;
    assert_eq!(foreign_pre.status, 403);
    assert!(cors_headers(&foreign_pre.headers).is_empty());

    // ... and its headers, not the upstream's, are on the proxied answer.
    let shared_get = |origin: &'static str, token: Option<String>| {
        let mut req = client()
            .get(gw.url("/shared/items"))
            .header("origin", origin);
        if let Some(token) = token {
            req = req.header("x-access-token", token);
        }
        req.send()
    };
    let ok = read(shared_get(APP, Some(token.clone())).await.unwrap()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json["shared"], true);
    assert_granted(&ok.headers, APP);
    assert!(ok.headers.get("access-control-allow-methods").is_none());
    let vary: Vec<_> = ok.headers.get_all("vary").iter().collect();
    assert_eq!(vary, ["Accept-Encoding", "Origin"]);

    let foreign = read(shared_get(EVIL, Some(token)).await.unwrap()).await;
    assert_eq!(foreign.status, 200, "{}", foreign.text);
    assert!(
        cors_headers(&foreign.headers).is_empty(),
        "the upstream's `*` is not passed on: {:?}",
        foreign.headers
    );

    let refused = read(shared_get(APP, None).await.unwrap()).await;
    assert_error(
        &refused,
        401,
        "Authentication Required",
        "Authentication Required",
    );
    assert_granted(&refused.headers, APP);
}

#[test]
fn any_origin_with_credentials_is_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, sample_users()).unwrap();
    let check = |cors: &str| {
        let path = dir.path().join("authgate.toml");
        std::fs::write(
            &path,
            format!(
                "[store]\nusers_file = \"{}\"\n[[upstreams]]\nname = \"app\"\nservers = [\"127.0.0.1:3000\"]\n\
                 [[routes]]\nprefix = \"/\"\nupstream = \"app\"\n{cors}",
                users.display()
            ),
        )
        .unwrap();
        let out = Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .env_remove("JWT_SECRET")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = check("[cors]\nallowed_origins = [\"*\"]\n");
    assert!(!ok, "{text}");
    assert!(text.contains("cors.allowed_origins"), "{text}");
    let (ok, text) = check("[cors]\nallowed_origins = [\"*\"]\nallow_credentials = false\n");
    assert!(ok, "{text}");
    let (ok, text) = check(&format!("[cors]\nallowed_origins = [\"{APP}\"]\n"));
    assert!(ok, "{text}");
}
