//! What the upstream hears about the caller comes from the gateway alone: identity headers in
//! any spelling, underscores included, are the gateway's, and so are the client-address
//! headers unless a trusted proxy sent them.

use crate::common::*;

const ROUTES: &str = "[[routes]]\nprefix = \"/\"\nupstream = \"app\"\n\
    [[routes]]\nprefix = \"/open\"\nupstream = \"app\"\nauth = \"none\"\n\
    [[routes]]\nprefix = \"/maybe\"\nupstream = \"app\"\nauth = \"optional\"\n";

const SPOOFS: &str = "X_User_Id: evil\r\nX_Account_Type: super\r\nx_user_email: e@evil\r\n\
    X_Session_Id: s\r\nx_customer_id: c\r\nX-User_Id: evil2\r\nX_Real_IP: 6.6.6.6\r\n\
    X_Forwarded_For: 6.6.6.6\r\nX-Original-URL: /admin\r\nX-Rewrite-Url: /admin\r\n\
    x_original_url: /admin\r\n";

fn options(server: &str) -> Options {
    Options {
        routes: Some(ROUTES.into()),
        server_section: server.into(),
        ..Options::default()
    }
}

fn no_underscore_names(seen: &Seen) {
    for name in seen.headers.keys() {
        let name = name.as_str();
        let dashed = name.replace('_', "-");
        assert!(
            !(name.contains('_')
                && [
                    "x-user-id",
                    "x-user-email",
                    "x-account-type",
                    "x-session-id",
                    "x-customer-id",
                    "x-real-ip",
                    "x-forwarded-for",
                    "x-access-token"
                ]
                .contains(&dashed.as_str())),
            "{name} reached the upstream"
        );
    }
}

#[tokio::test]
async fn underscore_spellings_of_identity_headers_never_reach_the_upstream() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options("underscore_headers = \"keep\"\n"));
    let token = signin(&gw).await;
    let with_token = format!("{SPOOFS}x-access-token: {token}\r\nx_custom: kept\r\n");
    for (path, headers) in [
        ("/open/x", SPOOFS.to_string()),
        ("/maybe/x", SPOOFS.to_string()),
        ("/maybe/x", with_token.clone()),
        ("/api/x", with_token.clone()),
    ] {
        let a = raw_get(gw.addr, path, &headers).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let seen = up.last();
        no_underscore_names(&seen);
        assert_eq!(seen.header("x-original-url"), None, "{path}");
        assert_eq!(seen.header("x-rewrite-url"), None, "{path}");
        if headers.contains("x-access-token") {
            assert_eq!(seen.header("x-user-id").as_deref(), Some(USER_ID), "{path}");
            assert_eq!(seen.header("x-account-type").as_deref(), Some("user"));
            assert_eq!(seen.header_count("x-user-id"), 1);
            // With underscores kept, other such headers pass.
            assert_eq!(seen.header("x_custom").as_deref(), Some("kept"));
        } else {
            assert_eq!(seen.header("x-user-id"), None, "{path}");
            assert_eq!(seen.header("x-account-type"), None, "{path}");
        }
        // The client's own X_Real_IP went; no X-Real-IP is added for a direct client.
        assert_eq!(seen.header("x-real-ip"), None);
    }
}

#[tokio::test]
async fn underscore_headers_are_dropped_by_default_and_never_carry_the_token() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options(""));
    let token = signin(&gw).await;
    // The token under an underscore name is not a token: the required route refuses.
    let a = raw_get(gw.addr, "/api/x", &format!("x_access_token: {token}\r\n")).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.json["error"], "Authentication Required");
    assert_eq!(up.count(), 0);
    // On an open route it is not forwarded either, and neither is any other underscore name.
    let a = raw_get(
        gw.addr,
        "/open/x",
        &format!("x_access_token: {token}\r\nx_custom: 1\r\nX-Fine: yes\r\n"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = up.last();
    assert!(
        seen.headers.keys().all(|n| !n.as_str().contains('_')),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-fine").as_deref(), Some("yes"));
}

#[tokio::test]
async fn client_address_headers_from_an_untrusted_peer_are_replaced() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options(""));
    let a = raw_get(
        gw.addr,
        "/open/x",
        "X-Forwarded-For: 6.6.6.6, 7.7.7.7\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https\r\n",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header_count("x-forwarded-for"), 1);
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header_count("x-real-ip"), 1);
    assert_eq!(seen.header("forwarded").as_deref(), Some("for=127.0.0.1"));
}

#[tokio::test]
async fn a_trusted_proxy_chain_is_appended_to() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, options("trusted_proxies = [\"127.0.0.1/32\"]\n"));
    let a = raw_get(
        gw.addr,
        "/open/x",
        "X-Forwarded-For: 6.6.6.6, 198.51.100.7\r\nForwarded: for=198.51.100.7\r\n",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = up.last();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 198.51.100.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-real-ip").as_deref(), Some("198.51.100.7"));
    assert_eq!(
        seen.header("forwarded").as_deref(),
        Some("for=198.51.100.7")
    );
}
