//! Broken requests get a clear JSON error with the right status: never a 500, never a crash,
//! never a forwarded request.

use crate::common::*;

async fn raw_post(gw: &Gateway, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
    read(
        client()
            .post(gw.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn malformed_bodies_on_signin_are_400() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            rate_limit_section: "[rate_limit]\nauth_per_minute = 100\n".into(),
            ..Options::default()
        },
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            br#"{"email":"a@b.c","password":"#.to_vec(),
            "Malformed JSON body",
        ),
        (
            "not json",
            b"email=a&password=b".to_vec(),
            "Malformed JSON body",
        ),
        ("empty", Vec::new(), "Request body must be a JSON object"),
        (
            "missing password",
            br#"{"email":"a@b.c"}"#.to_vec(),
            "missing field `password`",
        ),
        (
            "missing email",
            br#"{"password":"x"}"#.to_vec(),
            "missing field `email`",
        ),
        ("array", b"[1,2,3]".to_vec(), ""),
        ("null", b"null".to_vec(), ""),
        ("wrong type", br#"{"email":5,"password":"x"}"#.to_vec(), ""),
        (
            "invalid utf-8",
            vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
            "",
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            "",
        ),
    ];
    for (name, body, message) in cases {
        let a = raw_post(&gw, "/api/auth/signin", "application/json", body).await;
        assert_eq!(a.status, 400, "{name}: {}", a.text);
        assert_eq!(a.json["error"], "Bad Request", "{name}: {}", a.text);
        assert!(a.json["message"].is_string(), "{name}");
        if !message.is_empty() {
            assert_eq!(a.json["message"], message, "{name}");
        }
    }
    // The gateway is still alive and well.
    assert!(
        signin(&gw).await.len() > 20,
        "the gateway still serves signins"
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let up = Upstream::start();
    let gw = Gateway::start(
        &up,
        Options {
            server_section: "max_body_bytes = 2048\n".into(),
            ..Options::default()
        },
    );
    let big = format!(
        "{{\"email\":\"a@b.c\",\"password\":\"{}\"}}",
        "x".repeat(5000)
    );
    let a = raw_post(
        &gw,
        "/api/auth/signin",
        "application/json",
        big.clone().into_bytes(),
    )
    .await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert_eq!(a.json["error"], "Payload Too Large");

    // Chunked, with no Content-Length to look at first.
    let stream = futures_stream(big.into_bytes());
    let r = client()
        .post(gw.url("/api/auth/signin"))
        .header("content-type", "application/json")
        .body(stream)
        .send()
        .await
        .unwrap();
    let a = read(r).await;
    assert_eq!(a.status, 413, "{}", a.text);
    assert_eq!(up.count(), 0);
    assert!(
        signin(&gw).await.len() > 20,
        "the gateway still serves signins"
    );
}

fn futures_stream(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn wrong_method_unknown_route_and_dead_upstream() {
    let up = Upstream::start();
    let dead_port = free_port();
    let routes = format!(
        "[[routes]]\nprefix = \"/api\"\nupstream = \"app\"\n\
         [[routes]]\nprefix = \"/dead\"\nupstream = \"dead\"\nauth = \"none\"\n\
         [[upstreams]]\nname = \"dead\"\nservers = [\"127.0.0.1:{dead_port}\"]\n"
    );
    let gw = Gateway::start(
        &up,
        Options {
            routes: Some(routes),
            ..Options::default()
        },
    );

    let a = read(
        client()
            .get(gw.url("/api/auth/signin"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 405, "{}", a.text);
    assert_eq!(a.json["error"], "Method Not Allowed");

    let a = read(client().get(gw.url("/elsewhere")).send().await.unwrap()).await;
    assert_eq!(a.status, 404, "{}", a.text);
    assert_eq!(a.json["error"], "Not Found");

    let a = read(client().get(gw.url("/dead/x")).send().await.unwrap()).await;
    assert_eq!(a.status, 502, "{}", a.text);
    assert_eq!(a.json["error"], "Bad Gateway");
    assert!(a.json["message"].is_string());
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn long_targets_and_many_headers_get_json_and_malformed_requests_never_pass() {
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
    let long = format!("/{}", "a".repeat(9000));
    let a = raw_get(gw.addr, &long, "").await;
    assert_eq!(a.status, 414, "{}", a.head);
    assert_eq!(a.json["error"], "URI Too Long");
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    let a = raw_get(gw.addr, "/x", &many).await;
    assert_eq!(a.status, 431, "{}", a.head);
    assert_eq!(a.json["error"], "Request Header Fields Too Large");

    // Refused by Pingora before the gateway sees them (a bare 400, see the README): never
    // forwarded.
    for request in [
        "GET /x HTTP/1.2\r\nHost: app\r\n\r\n".to_string(),
        "POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
            .into(),
        "POST /x HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            .into(),
        format!("GET /{} HTTP/1.1\r\nHost: app\r\n\r\n", "a".repeat(70_000)),
    ] {
        let a = raw_request(gw.addr, request.as_bytes()).await;
        assert_eq!(a.status, 400, "{}: {}", &request[..20], a.head);
    }
    assert_eq!(up.count(), 0, "{:?}", up.requests());
}

#[tokio::test]
async fn a_broken_chunked_body_ends_the_connection() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    // A bad chunk size, then what would be a second request on the same connection.
    let request = "POST /api/auth/signin HTTP/1.1\r\nHost: app\r\nContent-Type: application/json\r\n\
                   Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n\
                   GET /api/x HTTP/1.1\r\nHost: app\r\n\r\n";
    let a = raw_request(gw.addr, request.as_bytes()).await;
    assert_eq!(a.status, 400, "{} {}", a.head, a.body);
    assert_eq!(a.json["error"], "Bad Request");
    assert!(
        a.head.to_ascii_lowercase().contains("connection: close"),
        "{}",
        a.head
    );
    assert!(
        !a.body.contains("HTTP/1.1"),
        "a second answer followed: {}",
        a.body
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn bodies_must_be_json_objects() {
    let up = Upstream::start();
    let gw = Gateway::start(&up, Options::default());
    for body in [
        serde_json::json!([EMAIL, PASSWORD]),
        serde_json::json!([]),
        serde_json::json!("text"),
    ] {
        let a = post_json(&gw.url("/api/auth/signin"), body.clone()).await;
        assert_error(&a, 400, "Bad Request", "Request body must be a JSON object");
        let a = post_json(&gw.url("/api/auth/register"), body).await;
        assert_error(&a, 400, "Bad Request", "Request body must be a JSON object");
    }
}
