//! A public prefix never opens a protected one: routes are matched on the normalised path, the
//! upstream receives that same path, and what cannot be normalised safely is refused.

use crate::common::*;

const ROUTES: &str = "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
    [[routes]]\nprefix = \"/public\"\nupstream = \"app\"\nauth = \"none\"\n\
    [[routes]]\nprefix = \"/api\"\nupstream = \"app\"\n\
    [[routes]]\nprefix = \"/admin\"\nupstream = \"app\"\naccount_types = [\"admin\", \"super\"]\n\
    [[routes]]\nprefix = \"/files\"\nupstream = \"app\"\nauth = \"none\"\nallow_encoded_slashes = true\n";

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(
        up,
        Options {
            routes: Some(ROUTES.into()),
            ..Options::default()
        },
    )
}

fn token_header(token: &str) -> String {
    format!("x-access-token: {token}\r\n")
}

#[tokio::test]
async fn dot_segments_cannot_leave_a_public_prefix() {
    let up = Upstream::start();
    let gw = gateway(&up);
    for target in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x",
        "/public/.%2e/api/x",
        "/public/./../api/x",
        "//public//..//api/x",
        "/public/x/../../api/x",
        "http://app/public/../api/x",
    ] {
        let a = raw_get(gw.addr, target, "").await;
        assert_eq!(a.status, 401, "{target}: {}", a.body);
        assert_eq!(a.json["error"], "Authentication Required", "{target}");
    }
    for target in [
        "/public/..%2fapi/x",
        "/public/..%2Fapi/x",
        "/public/%2e%2e%2fapi/x",
        "/public/..%5capi/x",
        "/public/..\\api/x",
        "/public/..;/api/x",
        "/public/%2e%2e;x/api/x",
        "/../api/x",
        "/public/../../api/x",
        "/public/%00/x",
        "/public/%0d%0ax",
        "/public/%zz",
        "/public/%2",
        "/public/%c0%ae%c0%ae/api/x",
        "/public/%C0%AE%C0%AE/api/x",
        "/public;x/../../api/x",
    ] {
        let a = raw_get(gw.addr, target, "").await;
        assert_eq!(a.status, 400, "{target}: {} {}", a.head, a.body);
        assert_eq!(a.json["error"], "Bad Request", "{target}: {}", a.body);
        assert!(a.json["message"].is_string(), "{target}");
    }
    assert_eq!(
        up.count(),
        0,
        "nothing reached the upstream: {:?}",
        up.requests()
    );
}

#[tokio::test]
async fn account_types_hold_whatever_the_spelling() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let token = signin(&gw).await;
    for target in [
        "/api/%2e%2e/admin/x",
        "/api/../admin/x",
        "/public/../admin/x",
        "/%61dmin/x",
        "//admin/x",
        "/api/./.././admin/x",
    ] {
        let a = raw_get(gw.addr, target, &token_header(&token)).await;
        assert_eq!(a.status, 403, "{target}: {}", a.body);
        assert_eq!(a.json["error"], "Forbidden");
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

#[tokio::test]
async fn the_upstream_receives_the_normalised_path_and_the_query_untouched() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let token = signin(&gw).await;
    let cases = [
        ("/public/./a//b", "/public/a/b"),
        ("/public/%61%62c/", "/public/abc/"),
        (
            "/public/a%20b?x=/../&y=%2e%2e",
            "/public/a%20b?x=/../&y=%2e%2e",
        ),
        ("/public/x/..", "/public/"),
        ("/api/x/../y?token=q", "/api/y?token=q"),
        ("http://app/public/abs?q=1", "/public/abs?q=1"),
        ("/public/caf%c3%a9", "/public/caf%C3%A9"),
    ];
    for (sent, received) in cases {
        let a = raw_get(gw.addr, sent, &token_header(&token)).await;
        assert_eq!(a.status, 200, "{sent}: {}", a.body);
        assert_eq!(up.last().uri, received, "{sent}");
    }
}

#[tokio::test]
async fn encoded_slashes_pass_only_where_a_route_allows_them() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let a = raw_get(gw.addr, "/files/a%2fb/c%5Cd", "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        up.last().uri,
        "/files/a%2Fb/c%5Cd",
        "kept encoded, never decoded"
    );
    let before = up.count();
    let a = raw_get(gw.addr, "/public/a%2fb", "").await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.json["message"]
            .as_str()
            .unwrap()
            .contains("encoded slash")
    );
    // A `..` cannot climb out of the opted-in route either.
    let a = raw_get(gw.addr, "/files/../api/x", "").await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn endpoints_are_matched_on_the_normalised_path() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let body = serde_json::json!({"email": EMAIL, "password": PASSWORD}).to_string();
    for target in [
        "/api/auth/./signin",
        "/api//auth/signin",
        "/api/auth/%73ignin",
        "/public/../api/auth/signin",
    ] {
        let req = format!(
            "POST {target} HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let a = raw_request(gw.addr, req.as_bytes()).await;
        assert_eq!(a.status, 200, "{target}: {}", a.body);
        assert!(a.json["token"].is_string(), "{target}");
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

#[tokio::test]
async fn path_parameters_cannot_move_a_request_to_another_route() {
    let up = Upstream::start();
    let gw = gateway(&up);
    let token = signin(&gw).await;
    // A Java backend reads `/admin;x/y` as `/admin/y`: the gateway would have routed it by `/`.
    for target in [
        "/admin;x/y",
        "/api;v=1/x",
        "/;/admin/x",
        "/public;a=b/x/..;/x",
    ] {
        let a = raw_get(gw.addr, target, &token_header(&token)).await;
        assert_eq!(a.status, 400, "{target}: {}", a.body);
        assert_eq!(a.json["error"], "Bad Request");
    }
    assert_eq!(up.count(), 0);
    // Parameters that leave the route as it is pass, untouched.
    let a = raw_get(gw.addr, "/public/x;jsessionid=1", "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(up.last().uri, "/public/x;jsessionid=1");
}
